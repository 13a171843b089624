"""The pure prune policy: keep-N, the age rule, and every protection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imagectl.errors import UsageError
from imagectl.prune.own_tags import own_tags, per_build
from imagectl.prune.policy import (
    Decision,
    VersionInfo,
    format_age,
    is_version_tag,
    parse_age,
    prune_images,
    select_prunable,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def digest(n: int | str) -> str:
    return "sha256:" + str(n).rjust(64, "0")


def versions(count: int, *, days_apart: int = 10, bump: str = "patch") -> list[VersionInfo]:
    """1.0.0 .. 1.0.{count-1}, the newest created today, each `days_apart` older."""
    out = []
    for patch in range(count):
        version = f"1.0.{patch}" if bump == "patch" else f"1.0.0-r{patch}"
        created = NOW - timedelta(days=days_apart * (count - 1 - patch))
        out.append(VersionInfo(version, digest(patch), created))
    return out


def select(
    infos: list[VersionInfo],
    keep: int = 3,
    older_than: timedelta | None = None,
    protected: dict[str, list[str]] | None = None,
) -> list[Decision]:
    return select_prunable(
        infos, keep=keep, older_than=older_than, now=NOW, protected_digests=protected or {}
    )


def deleted(decisions: list[Decision]) -> list[str]:
    return [d.version for d in decisions if d.delete]


def reasons(decisions: list[Decision], version: str) -> tuple[str, ...]:
    return next(d.reasons for d in decisions if d.version == version)


def prune_base_and_app(
    base: list[VersionInfo],
    app: list[VersionInfo],
    protected: dict[str, dict[str, list[str]]],
    base_protected: dict[str, list[str]],
) -> dict[str, list[Decision]]:
    """`app` built on `base`, keep 1, no age rule."""
    return prune_images(
        {"base": base, "app": app},
        ["app", "base"],
        keep=1,
        older_than=None,
        now=NOW,
        protected=protected,
        base_protected=base_protected,
    )


def test_keeps_the_newest_n_by_version_order_not_by_listing_order() -> None:
    infos = versions(12)
    decisions = select(list(reversed(infos[3:])) + infos[:3], keep=10)
    assert [d.version for d in decisions][:3] == ["1.0.11", "1.0.10", "1.0.9"]
    assert deleted(decisions) == ["1.0.1", "1.0.0"]
    assert reasons(decisions, "1.0.2") == ("newest 10",)
    assert reasons(decisions, "1.0.0") == ("not among the newest 10",)


def test_revision_versions_sort_numerically() -> None:
    decisions = select(versions(12, bump="revision"), keep=2)
    kept = [d.version for d in decisions if not d.delete]
    assert kept == ["1.0.0-r11", "1.0.0-r10"]


def test_keep_zero_deletes_every_unprotected_version_and_negative_is_refused() -> None:
    assert len(deleted(select(versions(3), keep=0))) == 3
    with pytest.raises(UsageError, match="--keep -1"):
        select(versions(3), keep=-1)


def test_age_rule_keeps_young_versions_beyond_the_newest_n() -> None:
    infos = versions(10, days_apart=20)  # 1.0.9 today, 1.0.0 180 days ago
    decisions = select(infos, keep=2, older_than=timedelta(days=90))
    # 1.0.5 is 80 days old, 1.0.4 is 100: only 1.0.4 and older go
    assert deleted(decisions) == ["1.0.4", "1.0.3", "1.0.2", "1.0.1", "1.0.0"]
    assert reasons(decisions, "1.0.5") == ("younger than 90d",)
    assert reasons(decisions, "1.0.9") == ("newest 2", "younger than 90d")
    assert reasons(decisions, "1.0.0") == ("not among the newest 2", "older than 90d")


def test_age_rule_boundary_and_unknown_age() -> None:
    exactly = VersionInfo("1.0.0", digest(0), NOW - timedelta(days=90))
    unknown = VersionInfo("1.0.1", digest(1), None)
    decisions = select([exactly, unknown], keep=0, older_than=timedelta(days=90))
    assert deleted(decisions) == []
    assert reasons(decisions, "1.0.0") == ("younger than 90d",)
    assert reasons(decisions, "1.0.1") == ("age unknown (no created label)",)
    # without an age rule the age does not matter
    assert deleted(select([exactly, unknown], keep=0)) == ["1.0.1", "1.0.0"]


def test_locked_digest_is_never_deleted() -> None:
    decisions = select(versions(5), keep=1, protected={digest(0): ["in the lock"]})
    assert deleted(decisions) == ["1.0.3", "1.0.2", "1.0.1"]
    assert reasons(decisions, "1.0.0") == ("in the lock",)


def test_floating_tag_protects_its_target() -> None:
    decisions = select(versions(5), keep=1, protected={digest(2): ["tag 1.0", "tag stable"]})
    assert "1.0.2" not in deleted(decisions)
    assert reasons(decisions, "1.0.2") == ("tag 1.0", "tag stable")


def test_base_of_a_kept_image_is_protected_through_an_alias_digest() -> None:
    infos = versions(4)
    platform_image = digest("abc")
    aliases = frozenset({platform_image})
    infos[1] = VersionInfo("1.0.1", digest(1), infos[1].created, aliases=aliases)
    decisions = select(infos, keep=1, protected={platform_image: ["base of app 2.0.0"]})
    assert deleted(decisions) == ["1.0.2", "1.0.0"]
    assert reasons(decisions, "1.0.1") == ("base of app 2.0.0",)


def test_a_version_sharing_a_kept_digest_is_kept() -> None:
    infos = versions(4)
    # 1.0.0 was adopted under the same digest as the newest version
    infos[0] = VersionInfo("1.0.0", digest(3), infos[0].created)
    decisions = select(infos, keep=1)
    assert deleted(decisions) == ["1.0.2", "1.0.1"]
    assert reasons(decisions, "1.0.0") == ("same digest as kept 1.0.3",)


def test_versions_sharing_a_doomed_digest_both_go() -> None:
    infos = [*versions(3), VersionInfo("1.0.9", digest(9), NOW)]
    infos[1] = VersionInfo("1.0.1", digest(0), infos[1].created)
    assert deleted(select(infos, keep=2)) == ["1.0.1", "1.0.0"]


def test_prune_images_protects_bases_of_kept_descendants_only() -> None:
    base = versions(5)
    app = [
        VersionInfo("2.0.0", digest("a0"), NOW, base_digest=digest(0)),  # doomed: not newest
        VersionInfo("2.0.1", digest("a1"), NOW, base_digest=digest(1)),  # kept
    ]
    result = prune_base_and_app(base, app, {}, {digest(2): ["base of gone 0.1.0 (lock)"]})
    assert deleted(result["app"]) == ["2.0.0"]
    assert deleted(result["base"]) == ["1.0.3", "1.0.0"]
    assert reasons(result["base"], "1.0.1") == ("base of app 2.0.1",)
    assert reasons(result["base"], "1.0.2") == ("base of gone 0.1.0 (lock)",)


def test_version_tags_follow_the_bump_scheme() -> None:
    assert is_version_tag("1.4.3", "patch") and not is_version_tag("1.4.3-r1", "patch")
    assert is_version_tag("3.12.7-r2", "revision") and not is_version_tag("3.12.7", "revision")
    for floating in ("1.4", "1", "latest", "01.4.3", "1.4.3-bookworm"):
        assert not is_version_tag(floating, "patch")


@pytest.mark.parametrize(
    ("text", "age", "shown"),
    [
        ("90d", timedelta(days=90), "90d"),
        ("2w", timedelta(weeks=2), "2w"),
        ("14d", timedelta(days=14), "2w"),
        ("36h", timedelta(hours=36), "36h"),
    ],
)
def test_parse_age(text: str, age: timedelta, shown: str) -> None:
    assert parse_age(text) == age
    assert format_age(age) == shown


@pytest.mark.parametrize("text", ["90", "d", "90 days", "-3d", "1.5d", "3m"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--older-than"):
        parse_age(text)


def test_a_base_named_by_the_lock_and_by_a_kept_version_is_one_reason() -> None:
    base = versions(3)
    app = [VersionInfo("2.0.0", digest("a0"), NOW, base_digest=digest(0))]
    result = prune_base_and_app(
        base,
        app,
        {"app": {digest("a0"): ["in the lock"]}},
        {digest(0): ["base of app 2.0.0 (lock)"]},
    )
    assert reasons(result["base"], "1.0.0") == ("base of app 2.0.0 (lock)",)
    assert deleted(result["base"]) == ["1.0.1"]


# --- per-version tags (issue 10 item 6) --------------------------------------------

PER_VERSION = ("{version}", "{version}-{base_tag}", "{date}", "sha-{sha}", "{major}.{minor}")


def built(version: str, n: int, day: int, sha: str) -> VersionInfo:
    return VersionInfo(
        version,
        digest(n),
        datetime(2026, 5, day, 12, tzinfo=UTC),
        revision=sha * 40,
        base_name="127.0.0.1:5000/upstream/debian:bookworm@sha256:" + "e" * 64,
    )


@pytest.mark.parametrize(
    ("template", "bump", "own"),
    [
        ("{version}-{base_tag}", "patch", True),
        ("{date}", "patch", True),
        ("sha-{sha}", "revision", True),
        ("{upstream}", "patch", True),
        ("{major}.{minor}-{date}", "patch", True),
        ("{major}.{minor}", "patch", False),
        ("{upstream}", "revision", False),
        ("{base_tag}", "patch", False),
        ("latest", "patch", False),
    ],
)
def test_per_build_templates(template: str, bump: str, own: bool) -> None:
    assert per_build(template, bump) is own


def test_a_tag_only_one_version_renders_is_its_own() -> None:
    infos = [built("1.0.0", 0, 1, "a"), built("1.0.1", 1, 2, "b"), built("1.0.2", 2, 2, "c")]
    floating = {
        "1.0.0-bookworm": digest(0),
        "20260501": digest(0),
        "sha-aaaaaaa": digest(0),
        "1.0.1-bookworm": digest(1),
        "20260502": digest(2),  # rendered by 1.0.1 and 1.0.2 (same day): shared
        "1.0": digest(2),  # {major}.{minor}: shared by construction
        "stable": digest(1),  # by hand: no template renders it
        "1.0.2-bookworm": digest(1),  # names another version's digest: not 1.0.2's own
    }
    own = own_tags(PER_VERSION, "patch", infos, floating)
    assert own == {
        "1.0.0": ("1.0.0-bookworm", "20260501", "sha-aaaaaaa"),
        "1.0.1": ("1.0.1-bookworm",),
    }


def test_a_version_without_labels_owns_only_what_its_version_renders() -> None:
    bare = VersionInfo("1.0.0", digest(0))
    floating = {"1.0.0-bookworm": digest(0), "20260501": digest(0)}
    templates = ("{version}", "{version}-rc", "{date}")
    assert own_tags(templates, "patch", [bare], {**floating, "1.0.0-rc": digest(0)}) == {
        "1.0.0": ("1.0.0-rc",)
    }


def test_a_doomed_version_names_the_tags_that_go_with_it() -> None:
    infos = versions(3)
    infos[0] = VersionInfo("1.0.0", digest(0), infos[0].created, tags=("1.0.0-bookworm",))
    decisions = select(infos, keep=2)
    assert deleted(decisions) == ["1.0.0"]
    assert reasons(decisions, "1.0.0") == (
        "not among the newest 2",
        "its own tags go too: 1.0.0-bookworm",
    )
