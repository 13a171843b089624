"""make_plan: every staleness reason, versions, tags, --force/--only, JSON shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagectl.errors import Location, PlanError
from imagectl.manifest.models import BaseConfig, ImageConfig, Manifest
from imagectl.plan.model import BuiltState, Observed, PlanOptions, StaleReason
from imagectl.plan.plan import make_plan

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REG = "localhost:5000/acme"
DEBIAN = "docker.io/library/debian:bookworm-slim"


def image(name: str, base: str, version: str, **kw: object) -> ImageConfig:
    bump = str(kw.pop("bump", "patch"))
    tags = kw.pop(
        "tags",
        ("{version}", "{upstream}", "{major}.{minor}")
        if bump == "revision"
        else ("{version}", "{major}.{minor}", "{major}"),
    )
    fields: dict[str, object] = dict(
        name=name,
        family="fam",
        registry=REG,
        context=Path("/ctx") / name,
        dockerfile=Path("/ctx") / name / "Dockerfile",
        version=version,
        base=base,
        bump=bump,
        tags=tuple(tags),  # type: ignore[call-overload]
        rebuild="never",
        builder="docker",
        platforms=(),
        network="host",
        args=(),
        labels=(),
        target=None,
        secrets=(),
        allow_latest=False,
        lint_ignore=(),
        location=Location("imagectl.yaml", 1, 1),
    )
    fields.update(kw)
    return ImageConfig(**fields)  # type: ignore[arg-type]


def manifest(*images: ImageConfig) -> Manifest:
    return Manifest(
        root=Path("/repo/imagectl.yaml"),
        files=(Path("/repo/imagectl.yaml"),),
        images={i.name: i for i in images},
        bases={"debian": BaseConfig("debian", DEBIAN, Location("imagectl.yaml", 3, 3))},
    )


FLEET = manifest(
    image("base", "debian", "1.4", rebuild="daily"),
    image("python", "base", "3.12.7", bump="revision"),
    image("api", "python", "2.0"),
    image("web", "base", "1.0"),
)


def built(version: str, base_ref: str, base_digest: str, inputs: str, **kw: object) -> BuiltState:
    tags = kw.pop("tags", (version,))
    at = kw.pop("built_at", NOW - timedelta(hours=1))
    return BuiltState(
        version=version,
        digest=f"sha256:{version}",
        base_ref=base_ref,
        base_digest=base_digest,
        inputs=inputs,
        built_at=at,  # type: ignore[arg-type]
        tags=tuple(tags),  # type: ignore[arg-type]
    )


def world_after_first_apply() -> Observed:
    return Observed(
        base_digests={"debian": "sha256:deb1"},
        built={
            "base": built("1.4.0", DEBIAN, "sha256:deb1", "in-base", tags=("1.4.0", "1.4", "1")),
            "python": built("3.12.7-r0", f"{REG}/base:1.4.0", "sha256:1.4.0", "in-python"),
            "api": built("2.0.0", f"{REG}/python:3.12.7-r0", "sha256:3.12.7-r0", "in-api"),
            "web": built("1.0.0", f"{REG}/base:1.4.0", "sha256:1.4.0", "in-web"),
        },
        inputs={"base": "in-base", "python": "in-python", "api": "in-api", "web": "in-web"},
    )


def test_first_plan_builds_everything_parents_first() -> None:
    observed = Observed(
        base_digests={"debian": "sha256:deb1"},
        built={},
        inputs={n: f"in-{n}" for n in FLEET.images},
    )
    plan = make_plan(FLEET, observed, NOW)
    assert [a.image for a in plan.actions] == ["base", "python", "web", "api"]
    assert all(a.reasons == (StaleReason.NEW,) for a in plan.actions)
    base, python = plan.actions[0], plan.actions[1]
    assert base.to_version == "1.4.0" and base.tags == ("1.4.0", "1.4", "1")
    assert base.base.ref == DEBIAN and base.base.digest == "sha256:deb1"
    assert python.to_version == "3.12.7-r0"
    assert python.tags == ("3.12.7-r0", "3.12.7", "3.12")
    assert python.depends_on == ("base",)
    assert python.base.ref == f"{REG}/base:1.4.0" and python.base.digest is None


@pytest.mark.parametrize("rebuilt", [False, True])
def test_images_on_one_base_share_its_use(rebuilt: bool) -> None:
    """One `BaseUse` per base, made once its action is final: the same for every image
    on it, whether the base is rebuilt in this plan or not."""
    fleet = manifest(
        image("base", "debian", "1.4"),
        image("web", "base", "1.0"),
        image("worker", "base", "1.0"),
        image("other", "debian", "1.0"),
    )
    observed = Observed(
        base_digests={"debian": "sha256:deb1"},
        built={},
        inputs={n: f"in-{n}" for n in fleet.images},
    )
    if not rebuilt:
        observed = replace(
            observed,
            built={
                "base": built("1.4.0", DEBIAN, "sha256:deb1", "in-base"),
                "other": built("1.0.0", DEBIAN, "sha256:deb1", "in-other"),
            },
        )
    plan = make_plan(fleet, observed, NOW)
    web, worker = plan.action("web"), plan.action("worker")
    assert web is not None and worker is not None
    assert web.base is worker.base
    assert web.base.digest == (None if rebuilt else "sha256:1.4.0")
    assert web.base.ref == f"{REG}/base:1.4.0"
    if rebuilt:
        base, other = plan.action("base"), plan.action("other")
        assert base is not None and other is not None and base.base is other.base


def test_unchanged_world_plans_nothing() -> None:
    plan = make_plan(FLEET, world_after_first_apply(), NOW)
    assert plan.actions == ()
    assert plan.unchanged == ("api", "base", "python", "web")


def test_base_update_rebuilds_exactly_the_descendants_with_next_versions() -> None:
    observed = replace(world_after_first_apply(), base_digests={"debian": "sha256:deb2"})
    plan = make_plan(FLEET, observed, NOW)
    summary = {a.image: (a.reasons, a.from_version, a.to_version) for a in plan.actions}
    assert summary == {
        "base": ((StaleReason.BASE_UPDATED,), "1.4.0", "1.4.1"),
        "python": ((StaleReason.BASE_REBUILT,), "3.12.7-r0", "3.12.7-r1"),
        "web": ((StaleReason.BASE_REBUILT,), "1.0.0", "1.0.1"),
        "api": ((StaleReason.BASE_REBUILT,), "2.0.0", "2.0.1"),
    }
    assert plan.action("api").depends_on == ("python",)  # type: ignore[union-attr]


def test_inputs_change_rebuilds_image_and_descendants_only() -> None:
    observed = world_after_first_apply()
    observed = replace(observed, inputs={**observed.inputs, "python": "in-python-2"})
    plan = make_plan(FLEET, observed, NOW)
    assert [(a.image, a.reasons) for a in plan.actions] == [
        ("python", (StaleReason.INPUTS_CHANGED,)),
        ("api", (StaleReason.BASE_REBUILT,)),
    ]
    assert plan.unchanged == ("base", "web")


def test_internal_base_digest_moved_elsewhere_is_base_rebuilt() -> None:
    observed = world_after_first_apply()
    moved = replace(observed.built["base"], version="1.4.1", digest="sha256:other")
    observed = replace(observed, built={**observed.built, "base": moved})
    plan = make_plan(FLEET, observed, NOW)
    assert {a.image for a in plan.actions} == {"python", "web", "api"}
    assert plan.action("python").base.digest == "sha256:other"  # type: ignore[union-attr]


def test_schedule_due_when_an_occurrence_fell_since_the_last_build() -> None:
    observed = world_after_first_apply()
    old = replace(observed.built["base"], built_at=datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    observed = replace(observed, built={**observed.built, "base": old})
    plan = make_plan(FLEET, observed, NOW)
    assert plan.actions[0].reasons == (StaleReason.SCHEDULE_DUE,)
    not_yet = replace(old, built_at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    observed = replace(observed, built={**observed.built, "base": not_yet})
    assert make_plan(FLEET, observed, NOW).actions == ()


def test_version_raised_starts_new_line_and_lowered_is_an_error() -> None:
    raised = manifest(
        *(i if i.name != "web" else replace(i, version="1.1") for i in FLEET.images.values())
    )
    plan = make_plan(raised, world_after_first_apply(), NOW)
    assert [(a.image, a.reasons, a.to_version) for a in plan.actions] == [
        ("web", (StaleReason.VERSION_CHANGED,), "1.1.0")
    ]
    lowered = manifest(
        *(i if i.name != "web" else replace(i, version="0.9") for i in FLEET.images.values())
    )
    with pytest.raises(PlanError, match=r"image 'web'.*0\.9.*1\.0\.0"):
        make_plan(lowered, world_after_first_apply(), NOW)


def test_missing_and_forced_reasons() -> None:
    observed = replace(world_after_first_apply(), missing=frozenset({"web"}))
    plan = make_plan(FLEET, observed, NOW, PlanOptions(force=frozenset({"api"})))
    assert [(a.image, a.reasons) for a in plan.actions] == [
        ("web", (StaleReason.MISSING,)),
        ("api", (StaleReason.FORCED,)),
    ]


def test_only_keeps_what_the_image_needs_and_reports_the_rest() -> None:
    observed = replace(world_after_first_apply(), base_digests={"debian": "sha256:deb2"})
    plan = make_plan(FLEET, observed, NOW, PlanOptions(only=frozenset({"python"})))
    assert [a.image for a in plan.actions] == ["base", "python"]
    assert plan.left_out == ("web", "api")


def test_unknown_force_name_is_an_error() -> None:
    with pytest.raises(PlanError, match="unknown image: nope"):
        make_plan(FLEET, world_after_first_apply(), NOW, PlanOptions(force=frozenset({"nope"})))


def test_floating_tag_held_by_a_newer_version_does_not_move() -> None:
    observed = world_after_first_apply()
    newer = replace(observed.built["web"], version="1.0.0", tags=("1.0.0", "1.0", "1"))
    observed = replace(observed, built={**observed.built, "web": newer})
    # forced rebuild of the same line: tags move (holder 1.0.0 is older than 1.0.1)
    plan = make_plan(FLEET, observed, NOW, PlanOptions(force=frozenset({"web"})))
    assert plan.action("web").tags == ("1.0.1", "1.0", "1")  # type: ignore[union-attr]
    assert plan.action("web").held_tags == ()  # type: ignore[union-attr]


def test_plan_json_has_the_documented_shape() -> None:
    observed = replace(world_after_first_apply(), base_digests={"debian": "sha256:deb2"})
    data = make_plan(FLEET, observed, NOW).to_json()
    assert data["format"] == 1 and data["unchanged"] == []
    python = data["actions"][1]
    assert python == {
        "image": "python",
        "family": "fam",
        "repository": f"{REG}/python",
        "reasons": ["base-rebuilt"],
        "from_version": "3.12.7-r0",
        "to_version": "3.12.7-r1",
        "tags": ["3.12.7-r1", "3.12.7", "3.12"],
        "depends_on": ["base"],
        "base": {"ref": f"{REG}/base:1.4.1", "digest": None},
        "method": "build",
        "why": "update: build",
    }


def test_sha_tag_without_git_is_a_plan_error() -> None:
    fleet = manifest(image("base", "debian", "1.4", tags=("{version}", "{sha}")))
    observed = Observed(base_digests={"debian": "sha256:d"}, built={}, inputs={"base": "i"})
    with pytest.raises(PlanError, match="image 'base'"):
        make_plan(fleet, observed, NOW)
    with_git = replace(observed, revision="0123456789abcdef")
    assert make_plan(fleet, with_git, NOW).actions[0].tags == ("1.4.0", "0123456")


def test_switch_to_revision_never_moves_the_immutable_tag_of_an_earlier_build() -> None:
    """`{upstream}` of 3.12.7-r0 is 3.12.7: the immutable tag of the patch-line build."""
    observed = world_after_first_apply()
    python = replace(
        observed.built["python"],
        version="3.12.7",
        digest="sha256:p",
        history={"3.12.6": "sha256:o", "3.12.7": "sha256:p"},
    )
    observed = replace(
        observed,
        built={**observed.built, "python": python},
        base_digests={"debian": "sha256:deb2"},  # a reason to rebuild everything
    )
    plan = make_plan(FLEET, observed, NOW)
    by_name = {a.image: a for a in plan.actions}
    blocked = by_name["python"].blocked
    assert by_name["python"].to_version == "3.12.7-r0"
    assert blocked == (
        "imagectl.yaml:1:1: tag '3.12.7', rendered from the template '{upstream}', is the "
        f"immutable tag of build 3.12.7 (sha256:p) of {REG}/python; an immutable tag is never "
        "moved: remove '{upstream}' from the image's tags or render it differently "
        '(e.g. "v{upstream}")'
    )
    assert "3.12.7" not in by_name["python"].tags
    assert [a.image for a in plan.blocked] == ["python"]
    assert not by_name["base"].blocked and not by_name["web"].blocked
    assert by_name["api"].depends_on == ("python",)  # skipped when python fails


def test_new_registry_is_missing_without_refresh() -> None:
    observed = world_after_first_apply()
    built = {n: replace(s, repository=f"{REG}/{n}") for n, s in observed.built.items()}
    moved = manifest(*(replace(i, registry="other:5000/acme") for i in FLEET.images.values()))
    plan = make_plan(moved, replace(observed, built=built), NOW)
    reasons = {a.image: a.reasons for a in plan.actions}
    assert reasons["base"] == (StaleReason.MISSING,)
    assert plan.actions[0].repository == "other:5000/acme/base"
    assert plan.actions[0].to_version == "1.4.1"
    assert make_plan(FLEET, replace(observed, built=built), NOW).actions == ()


def test_next_version_already_in_the_history_is_blocked() -> None:
    observed = world_after_first_apply()
    base = replace(observed.built["base"], history={"1.4.0": "sha256:a", "1.4.1": "sha256:b"})
    observed = replace(observed, built={**observed.built, "base": base}, inputs={})
    plan = make_plan(FLEET, observed, NOW)
    assert "the version tag localhost:5000/acme/base:1.4.1 already exists" in (
        plan.actions[0].blocked
    )


def test_base_tag_is_the_tag_of_the_base_as_written_or_the_parent_version() -> None:
    """{base_tag}: the external base's tag (digest dropped), the internal parent's version
    (planned or built), and empty for a base written without a tag."""
    with_base_tag = ("{version}", "{version}-{base_tag}")
    fleet = Manifest(
        root=Path("/repo/imagectl.yaml"),
        files=(Path("/repo/imagectl.yaml"),),
        images={
            "base": image("base", "debian", "1.4", tags=with_base_tag),
            "child": image("child", "base", "2.0", tags=with_base_tag),
            "bare": image("bare", "plain", "1.0", tags=("{version}", "{base_tag}")),
        },
        bases={
            "debian": BaseConfig(
                "debian", DEBIAN + "@sha256:" + "d" * 64, Location("imagectl.yaml", 3, 3)
            ),
            "plain": BaseConfig("plain", "localhost:5000/plain", Location("imagectl.yaml", 4, 3)),
        },
    )
    observed = Observed(
        base_digests={"debian": "sha256:deb1", "plain": "sha256:p"},
        built={},
        inputs={n: f"in-{n}" for n in fleet.images},
    )
    with pytest.raises(PlanError, match=r"image 'bare'.*\{base_tag\} is empty"):
        make_plan(fleet, observed, NOW)
    fleet.images.pop("bare")
    plan = make_plan(fleet, observed, NOW)
    assert plan.action("base").tags == ("1.4.0", "1.4.0-bookworm-slim")  # type: ignore[union-attr]
    assert plan.action("child").tags == ("2.0.0", "2.0.0-1.4.0")  # type: ignore[union-attr]
    # the parent already built at 1.4.0 and unchanged: the child's base tag is its version
    built_world = replace(
        observed,
        built={"base": built("1.4.0", DEBIAN, "sha256:deb1", "in-base", tags=("1.4.0",))},
    )
    plan = make_plan(fleet, built_world, NOW)
    assert [a.image for a in plan.actions] == ["child"]
    assert plan.actions[0].tags == ("2.0.0", "2.0.0-1.4.0")
