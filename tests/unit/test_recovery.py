"""The registry as the truth, with an in-memory registry: taken version tags, drifted
floating tags, and the apply protocol refusing to move an immutable tag."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagectl.apply.protocol import ImageRunner, LockRecorder, RunContext
from imagectl.errors import RegistryError
from imagectl.labels import LABEL_BASE_DIGEST, LABEL_BASE_NAME, LABEL_INPUTS, LABEL_VERSION
from imagectl.lockfile import read_lock
from imagectl.plan.model import Action, BaseUse, BuiltState, Observed, StaleReason
from imagectl.plan.plan import make_plan
from imagectl.recovery import settle, tag_drift
from imagectl.registry import RegistryClient
from tests.fixtures.fake_registry import FakeRegistry
from tests.unit.test_plan import DEBIAN, NOW, image, manifest
from tests.unit.test_registry_client import client_for

HOST = "registry.test"
IN = "sha256:" + "1" * 64  # an inputs digest (labels are validated like any digest)
BASE = image("base", "debian", "1.4", registry=f"{HOST}/acme")
WEB = image("web", "debian", "1.0", registry=f"{HOST}/acme")
FLEET = manifest(BASE, WEB)


def ours(
    version: str,
    inputs: str = IN,
    base_digest: str = "sha256:deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2",
) -> dict[str, str]:
    return {
        LABEL_VERSION: version,
        LABEL_INPUTS: inputs,
        LABEL_BASE_DIGEST: base_digest,
        LABEL_BASE_NAME: DEBIAN,
    }


def state(
    version: str,
    digest: str,
    base_digest: str = "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1",
    **kw: object,
) -> BuiltState:
    fields: dict[str, object] = dict(
        version=version,
        digest=digest,
        base_ref=DEBIAN,
        base_digest=base_digest,
        inputs=IN,
        built_at=NOW,
        tags=(version, "1.4", "1") if version.startswith("1.4") else (version, "1.0", "1"),
        repository="",
        history={version: digest},
    )
    fields.update(kw)
    return BuiltState(**fields)  # type: ignore[arg-type]


def planned(fake: FakeRegistry, observed: Observed) -> tuple[list[tuple[str, str]], Observed]:
    with client_for(fake) as client:
        plan, after = settle(FLEET, client, observed, lambda o: make_plan(FLEET, o, NOW))
    return [(a.image, a.to_version) for a in plan.actions], after


def test_lock_behind_the_registry_recovers_and_plans_from_there() -> None:
    fake = FakeRegistry()
    old = fake.add_image(
        "acme/base",
        "1.4.0",
        ours(
            "1.4.0",
            base_digest="sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1",
        ),
    )
    new = fake.add_image("acme/base", "1.4.1", ours("1.4.1"))  # built by another clone
    for tag in ("1.4", "1"):
        fake.put("acme/base", tag, *fake.manifests[("acme/base", new)])
    web = fake.add_image(
        "acme/web",
        "1.0.0",
        ours(
            "1.0.0",
            base_digest="sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1",
        ),
    )
    observed = Observed(
        base_digests={
            "debian": "sha256:deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2deb2"
        },  # the vendor moved: both are stale
        built={
            "base": state("1.4.0", old, repository=BASE.repository),
            "web": state("1.0.0", web, repository=WEB.repository),
        },
        inputs={"base": IN, "web": IN},
    )
    actions, after = planned(fake, observed)
    assert actions == [("web", "1.0.1")], "base 1.4.1 exists: it must not be planned again"
    assert after.built["base"].digest == new and after.built["base"].version == "1.4.1"
    heads = [p for m, p in fake.calls if m == "HEAD"]
    assert heads.count("/v2/acme/base/manifests/1.4.1") == 1
    assert heads.count("/v2/acme/web/manifests/1.0.1") == 1
    assert len([p for p in heads if "/web/" in p]) == 1, "one HEAD per action, nothing more"


def test_unchanged_images_cost_no_request() -> None:
    fake = FakeRegistry()
    observed = Observed(
        base_digests={
            "debian": "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1"
        },
        built={
            "base": state(
                "1.4.0",
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                repository=BASE.repository,
            )
        },
        inputs={"base": IN, "web": IN},
    )
    actions, _ = planned(fake, observed)
    assert actions == [("web", "1.0.0")]
    assert fake.calls == [("HEAD", "/v2/acme/web/manifests/1.0.0")]


def test_version_tag_held_by_something_else_blocks_the_image() -> None:
    fake = FakeRegistry()
    fake.add_image("acme/web", "1.0.0", {"maintainer": "someone"})
    observed = Observed(
        base_digests={
            "debian": "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1"
        },
        built={
            "base": state(
                "1.4.0",
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                repository=BASE.repository,
            )
        },
        inputs={"base": IN, "web": IN},
    )
    with client_for(fake) as client:
        plan, _ = settle(FLEET, client, observed, lambda o: make_plan(FLEET, o, NOW))
    (action,) = plan.actions
    assert "already exists" in action.blocked and "not an imagectl build" in action.blocked
    assert action.blocked.startswith("imagectl.yaml:1:1:")


def test_listed_tags_need_no_head() -> None:
    fake = FakeRegistry()
    observed = Observed(
        base_digests={
            "debian": "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1"
        },
        built={},
        inputs={"base": IN},
        listed=True,
    )
    planned(fake, observed)
    assert fake.calls == []


@pytest.mark.parametrize(
    ("moves", "expected"),
    [
        ({}, ()),
        ({"1": None}, (StaleReason.TAG_MISSING,)),
        ({"1.4": "older"}, (StaleReason.TAG_MOVED,)),
        ({"1": "stranger"}, (StaleReason.TAG_MOVED,)),
        ({"1": "newer"}, ()),  # forward only: a newer build holds it
        ({"1": None, "1.4": "older"}, (StaleReason.TAG_MISSING, StaleReason.TAG_MOVED)),
    ],
)
def test_tag_drift(moves: dict[str, str | None], expected: tuple[StaleReason, ...]) -> None:
    fake = FakeRegistry()
    older = fake.add_image("acme/base", "1.4.0", ours("1.4.0"))
    current = fake.add_image("acme/base", "1.4.1", ours("1.4.1"))
    holders = {
        "older": older,
        "stranger": fake.add_image("acme/base", "x", {"a": "b"}),
        "newer": fake.add_image("acme/base", "1.4.2", ours("1.4.2")),
    }
    for tag in ("1.4", "1"):
        holder = moves.get(tag, "current")
        if holder is not None:
            digest = current if holder == "current" else holders[holder]
            fake.put("acme/base", tag, *fake.manifests[("acme/base", digest)])
    built = state("1.4.1", current, history={"1.4.0": older, "1.4.1": current})
    with client_for(fake) as client:
        assert tag_drift(client, BASE, built) == expected


def test_retag_plan_puts_tags_back_without_rebuilding_descendants() -> None:
    app = image("app", "base", "2.0", registry=f"{HOST}/acme")
    fleet = manifest(BASE, app)
    base = state(
        "1.4.0",
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        repository=BASE.repository,
    )
    observed = Observed(
        base_digests={
            "debian": "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1"
        },
        built={
            "base": base,
            "app": state(
                "2.0.0",
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                base_ref=f"{BASE.repository}:1.4.0",
                base_digest="sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            ),
        },
        inputs={"base": IN, "app": IN},
        tag_drift={"base": (StaleReason.TAG_MISSING,)},
    )
    plan = make_plan(fleet, observed, NOW)
    (action,) = plan.actions
    assert action.retag_only and action.to_version == "1.4.0"
    assert action.tags == ("1.4.0", "1.4", "1") and action.reasons == (StaleReason.TAG_MISSING,)
    assert plan.unchanged == ("app",)


def runner_for(
    tmp_path: Path, client: RegistryClient, action: Action
) -> tuple[ImageRunner, LockRecorder]:
    python = image("python", "debian", "3.12.7", bump="revision", registry=f"{HOST}/acme")
    ctx = RunContext(
        manifest=manifest(python),
        client=client,
        log_dir=tmp_path / "logs",
        revision=None,
        source=None,
        now=lambda: datetime(2026, 12, 1, tzinfo=UTC),
    )
    recorder = LockRecorder(tmp_path / "imagectl.lock", None)
    return ImageRunner(ctx, {action.image: action}, recorder), recorder


def test_apply_never_moves_a_tag_whose_holder_is_that_version(tmp_path: Path) -> None:
    """Known from the holder's version label when the lock's history does not know it."""
    fake = FakeRegistry()
    build = fake.add_image(
        "acme/python",
        "3.12.7-r0",
        ours(
            "3.12.7-r0",
            base_digest="sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
        ),
    )
    patch_build = fake.add_image("acme/python", "3.12.7", ours("3.12.7"))
    action = Action(
        image="python",
        family="fam",
        repository=f"{HOST}/acme/python",
        reasons=(StaleReason.TAG_MISSING,),
        from_version="3.12.7-r0",
        to_version="3.12.7-r0",
        tags=("3.12.7-r0", "3.12.7", "3.12"),
        held_tags=(),
        depends_on=(),
        base=BaseUse(
            "debian",
            DEBIAN,
            "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            False,
        ),
        inputs=IN,
        depth=0,
        templates=("{version}", "{upstream}", "{major}.{minor}"),
    )
    with client_for(fake) as client:
        runner, _ = runner_for(tmp_path, client, action)
        with pytest.raises(RegistryError) as failed:
            runner.run("python")
    message = str(failed.value)
    assert "tag '3.12.7', rendered from the template '{upstream}'" in message
    assert f"immutable tag of build 3.12.7 ({patch_build})" in message
    assert (
        fake.manifests[("acme/python", "3.12.7")][0]
        == fake.manifests[("acme/python", patch_build)][0]
    )
    assert fake.manifests[("acme/python", "3.12")][0] == fake.manifests[("acme/python", build)][0]
    lock = read_lock(tmp_path / "imagectl.lock")
    assert lock is not None
    record = lock.images["python"]
    assert record.tags == ["3.12.7-r0", "3.12"]
    assert record.versions == {"3.12.7": patch_build, "3.12.7-r0": build}


def test_blocked_action_fails_before_any_request(tmp_path: Path) -> None:
    fake = FakeRegistry()
    action = Action(
        image="python",
        family="fam",
        repository=f"{HOST}/acme/python",
        reasons=(StaleReason.NEW,),
        from_version=None,
        to_version="3.12.7-r0",
        tags=("3.12.7-r0",),
        held_tags=(),
        depends_on=(),
        base=BaseUse(
            "debian",
            DEBIAN,
            "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            False,
        ),
        inputs=IN,
        depth=0,
        blocked="imagectl.yaml:1:1: tag '3.12.7' …",
    )
    with client_for(fake) as client:
        runner, _ = runner_for(tmp_path, client, action)
        with pytest.raises(Exception, match=r"tag '3\.12\.7'"):
            runner.run("python")
    assert fake.calls == []
    assert runner.outcomes["python"].state == "failed"


def test_saved_plan_keeps_blocked_and_templates() -> None:
    observed = Observed(
        base_digests={
            "debian": "sha256:deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1deb1"
        },
        built={
            "base": replace(
                state(
                    "1.4.0",
                    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                ),
                history={"1.4": "sha256:x"},
            )
        },
        inputs={"base": "other"},
    )
    plan = make_plan(manifest(BASE), observed, NOW)
    (action,) = plan.actions
    assert action.blocked and Action.from_saved(action.to_saved()) == action
    assert action.to_json()["blocked"] == action.blocked
