"""The per-image apply protocol, in-process: an in-memory registry and a fake builder.

Every test goes through the real observe -> make_plan -> apply_plan path (scheduler,
ImageRunner, LockRecorder); only the registry (tests/fixtures/fake_registry.py behind
the real RegistryClient) and the builder are fakes. A "kill" snapshots the registry and
the lock at the step hook, stops the run, and restores that snapshot afterwards: the
state a SIGKILL at that instant leaves behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from imagectl.apply.engine import ApplyOptions, ApplyResult, apply_plan
from imagectl.apply.steps import OutcomeState, StepEvent
from imagectl.builders.base import BuildRequest
from imagectl.labels import LABEL_CREATED, LABEL_VERSION
from imagectl.lockfile import journal_path, read_lock, render_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.observe import observe
from imagectl.plan.model import Plan
from imagectl.plan.plan import make_plan
from imagectl.rebase.sources import PublishedDocs
from imagectl.registry import RegistryClient
from tests.fixtures.fake_builder import FakeBuilder, repo_and_tag
from tests.fixtures.fake_registry import FakeRegistry, config_blob, digest_of
from tests.unit.test_registry_client import client_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEBIAN = "up/debian"
BODY = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


class Killed(BaseException):
    """What the step hook raises in place of SIGKILL."""


@dataclass(frozen=True)
class Snapshot:
    """The registry, the lock and its journal at one instant: what a SIGKILL then leaves."""

    manifests: dict[tuple[str, str], tuple[bytes, str]]
    blobs: dict[tuple[str, str], bytes]
    lock: bytes | None
    journal: bytes | None

    @classmethod
    def take(cls, registry: FakeRegistry, lock_path: Path) -> Snapshot:
        """The lock first, then the registry: other images may go on meanwhile, and what
        the lock records was in the registry before (never the other way round)."""
        journal = journal_path(lock_path)
        lock = lock_path.read_bytes() if lock_path.exists() else None
        lines = journal.read_bytes() if journal.exists() else None
        return cls(dict(registry.manifests), dict(registry.blobs), lock, lines)

    def restore(self, registry: FakeRegistry, lock_path: Path) -> None:
        registry.manifests, registry.blobs = dict(self.manifests), dict(self.blobs)
        for path, data in ((lock_path, self.lock), (journal_path(lock_path), self.journal)):
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)


def write_repo(root: Path, images: dict[str, tuple[str, str]]) -> Manifest:
    """A family from registry.test/up/debian:12; `images` is name -> (from, version)."""
    lines = [
        "version: 1",
        "registry: registry.test/acme",
        "families:",
        "  f:",
        "    from: registry.test/up/debian:12",
        "    images:",
    ]
    for name, (base, version) in images.items():
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(BODY)
        parent = f", from: {base}" if base else ""
        lines.append(f'      {name}: {{context: {name}, version: "{version}"{parent}}}')
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    return load_manifest(root / "imagectl.yaml")


FLEET = {"base": ("", "1.0"), "app": ("base", "2.0"), "other": ("", "3.0")}


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.add_image(DEBIAN, "12", {})
    return fake


@pytest.fixture
def client(registry: FakeRegistry) -> Iterator[RegistryClient]:
    with client_for(registry) as c:
        yield c


def plan_of(manifest: Manifest, client: RegistryClient) -> Plan:
    return make_plan(manifest, observe(manifest, client), NOW)


SNAPSHOT = ("", "snapshot taken")


def apply(
    manifest: Manifest,
    plan: Plan,
    client: RegistryClient,
    builder: FakeBuilder,
    *,
    kill_at: tuple[str, str] | None = None,
    steps: list[tuple[str, str]] | None = None,
    jobs: int = 1,
    guard_races: bool = False,
) -> ApplyResult:
    """apply_plan with the fake builder; `kill_at` (image, step) kills the run there."""
    stop = threading.Event()
    frozen: list[Snapshot] = []

    def on_step(image: str, event: StepEvent | OutcomeState) -> None:
        if isinstance(event, StepEvent) and event.begun:
            return  # progress only: not a fault point
        step = str(event)
        if steps is not None:
            steps.append((image, step))
        if (image, step) == kill_at:
            frozen.append(Snapshot.take(builder.registry, manifest.lock_path))
            if steps is not None:
                steps.append(SNAPSHOT)  # other images' steps may have gone on meanwhile
            stop.set()
            raise Killed(f"{image}:{step}")

    result = apply_plan(
        manifest,
        plan,
        client,
        ApplyOptions(jobs=jobs, git=False, guard_races=guard_races),
        on_step=on_step,
        stop=stop,
        now=lambda: NOW,
        builders={"docker": builder},
    )
    if kill_at is not None:
        assert frozen, f"the run never reached {kill_at}"
        frozen[0].restore(builder.registry, manifest.lock_path)
    return result


def tags_of(registry: FakeRegistry) -> dict[str, str]:
    """repo:tag -> digest for every tag of the registry (digest-keyed entries left out)."""
    return {
        f"{repo}:{ref}": digest_of(raw)
        for (repo, ref), (raw, _) in sorted(registry.manifests.items())
        if not ref.startswith("sha256:")
    }


def converge(manifest: Manifest, client: RegistryClient, builder: FakeBuilder) -> ApplyResult:
    """Plan from what is there now, and apply: what the next `imagectl apply` does."""
    return apply(manifest, plan_of(manifest, client), client, builder)


# -- a fresh build ---------------------------------------------------------------------------


def test_a_fresh_build_pushes_verifies_moves_floating_tags_and_records(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, FLEET)
    builder = FakeBuilder(registry)
    steps: list[tuple[str, str]] = []
    result = apply(manifest, plan_of(manifest, client), client, builder, steps=steps)

    assert {n: o.state for n, o in result.outcomes.items()} == {
        "base": "built",
        "app": "built",
        "other": "built",
    }
    assert result.builder_modes == {"docker": "fake 1.0"}
    assert [s for i, s in steps if i == "base"] == [
        "start",
        "built",
        "pushed",
        "verified",
        "tagged:1.0",
        "tagged:1",
        "recorded",
    ]
    base = result.outcomes["base"]
    assert base.tags_moved == ("1.0", "1") and base.digest is not None
    tags = tags_of(registry)
    assert tags["acme/base:1.0.0"] == tags["acme/base:1.0"] == tags["acme/base:1"] == base.digest
    # the child is built FROM its parent pinned by the digest just pushed
    app_req = next(r for r in builder.built if r.name == "app")
    assert app_req.build_args["BASE_IMAGE"] == f"registry.test/acme/base@{base.digest}"
    lock = read_lock(manifest.lock_path)
    assert lock is not None
    assert {n: (r.version, r.digest) for n, r in lock.images.items()} == {
        n: (v, tags[f"acme/{n}:{v}"])
        for n, v in (("base", "1.0.0"), ("app", "2.0.0"), ("other", "3.0.0"))
    }
    assert lock.images["base"].tags == ["1.0.0", "1.0", "1"]
    assert lock.images["app"].base.digest == base.digest
    # a second run has nothing to do
    assert plan_of(manifest, client).actions == ()


# -- adoption --------------------------------------------------------------------------------


class PushedThenKilled(NamedTuple):
    """A one-image repo whose plan an earlier apply pushed, then died before tagging."""

    manifest: Manifest
    plan: Plan
    pushed: str  # the digest under the immutable tag


@pytest.fixture
def pushed_then_killed(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> PushedThenKilled:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})
    plan = plan_of(manifest, client)
    apply(manifest, plan, client, FakeBuilder(registry), kill_at=("base", "pushed"))
    assert "acme/base:1.0" not in tags_of(registry)
    return PushedThenKilled(manifest, plan, tags_of(registry)["acme/base:1.0.0"])


def test_an_identical_build_under_the_immutable_tag_is_adopted_not_pushed_again(
    pushed_then_killed: PushedThenKilled, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest, plan, pushed = pushed_then_killed
    builder = FakeBuilder(registry)
    result = apply(manifest, plan, client, builder)
    outcome = result.outcomes["base"]
    assert outcome.state == "adopted" and outcome.digest == pushed
    assert builder.built == [] and builder.pushed == []  # adopted before building
    assert outcome.tags_moved == ("1.0", "1")
    assert tags_of(registry)["acme/base:1"] == pushed
    lock = read_lock(manifest.lock_path)
    assert lock is not None and lock.images["base"].digest == pushed


def test_a_kill_right_after_adopting_converges_on_the_next_run(
    pushed_then_killed: PushedThenKilled, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest, plan, pushed = pushed_then_killed
    steps: list[tuple[str, str]] = []
    apply(manifest, plan, client, FakeBuilder(registry), kill_at=("base", "adopted"), steps=steps)
    assert steps == [("base", "start"), ("base", "adopted"), SNAPSHOT]
    builder = FakeBuilder(registry)
    result = converge(manifest, client, builder)
    assert result.outcomes["base"].state == "adopted" and builder.pushed == []
    assert {k: v for k, v in tags_of(registry).items() if k.startswith("acme/")} == {
        "acme/base:1.0.0": pushed,
        "acme/base:1.0": pushed,
        "acme/base:1": pushed,
    }


def test_a_floating_tag_deleted_by_hand_is_put_back_without_a_build(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})
    apply(manifest, plan_of(manifest, client), client, FakeBuilder(registry))
    before = tags_of(registry)
    lock_before = read_lock(manifest.lock_path)
    del registry.manifests[("acme/base", "1")]
    plan = make_plan(manifest, observe(manifest, client, refresh=True), NOW)
    assert [(a.image, a.retag_only) for a in plan.actions] == [("base", True)]
    builder = FakeBuilder(registry)
    result = apply(manifest, plan, client, builder)
    assert result.outcomes["base"].state == "adopted" and result.outcomes["base"].tags_moved
    assert builder.built == [] and builder.pushed == []
    assert tags_of(registry) == before
    assert read_lock(manifest.lock_path) == lock_before


def test_a_different_build_under_the_immutable_tag_is_refused_and_not_recorded(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})
    plan = plan_of(manifest, client)
    squatter = registry.add_image("acme/base", "1.0.0", {LABEL_VERSION: "1.0.0"})
    builder = FakeBuilder(registry)
    result = apply(manifest, plan, client, builder)
    outcome = result.outcomes["base"]
    assert outcome.state == "failed" and "already exists with a different build" in outcome.error
    assert builder.pushed == []
    assert tags_of(registry)["acme/base:1.0.0"] == squatter
    lock = read_lock(manifest.lock_path)
    assert lock is None or "base" not in lock.images


def test_a_push_the_registry_does_not_confirm_is_a_lost_race_recording_the_winner(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})

    def rival(req: BuildRequest) -> None:  # another apply pushes its build of 1.0.0 right after
        repo, tag = repo_and_tag(req.ref)
        registry.add_image(repo, tag, {**req.labels, LABEL_CREATED: "2026-12-01T11:59:00Z"})

    steps: list[tuple[str, str]] = []
    builder = FakeBuilder(registry, after_push=rival)
    result = apply(manifest, plan_of(manifest, client), client, builder, steps=steps)
    outcome = result.outcomes["base"]
    assert outcome.state == "failed" and "lost a race" in outcome.error
    assert ("base", "verified") not in steps  # verification failed before any tag moved
    winner = tags_of(registry)["acme/base:1.0.0"]
    assert [k for k in tags_of(registry) if k.startswith("acme/base:")] == ["acme/base:1.0.0"]
    lock = read_lock(manifest.lock_path)
    assert lock is not None and lock.images["base"].digest == winner  # the registry's build


# -- forward-only floating tags --------------------------------------------------------------


def test_an_older_line_never_takes_a_floating_tag_a_newer_version_holds(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})
    plan = plan_of(manifest, client)
    assert plan.actions[0].floating_tags == ("1.0", "1")
    # after planning, 1.4.2 (another line, newer) took `1`; `1.0` belongs to 0.9.0 (older):
    # a concurrent writer, which the holder reads of --guard-races see
    newer = registry.add_image("acme/base", "1", {LABEL_VERSION: "1.4.2"})
    older = registry.add_image("acme/base", "1.0", {LABEL_VERSION: "0.9.0"})
    result = apply(manifest, plan, client, FakeBuilder(registry), guard_races=True)
    outcome = result.outcomes["base"]
    assert outcome.state == "built"
    assert outcome.tags_moved == ("1.0",) and outcome.tags_held == ("1",)
    tags = tags_of(registry)
    assert tags["acme/base:1"] == newer
    assert tags["acme/base:1.0"] == outcome.digest != older
    lock = read_lock(manifest.lock_path)
    assert lock is not None and lock.images["base"].tags == ["1.0.0", "1.0"]


# -- failure isolation (through the scheduler) -----------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_build_fails_that_image_skips_its_descendants_and_others_go_on(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient, jobs: int
) -> None:
    manifest = write_repo(tmp_path, FLEET)
    builder = FakeBuilder(registry, fail=frozenset({"base"}))
    steps: list[tuple[str, str]] = []
    result = apply(manifest, plan_of(manifest, client), client, builder, jobs=jobs, steps=steps)
    assert ("base", "failed") in steps and ("app", "skipped") in steps  # progress shows both
    states = {n: (o.state, o.error) for n, o in result.outcomes.items()}
    assert states["base"] == ("failed", "base: RUN false: exit code 1")
    assert states["app"] == ("skipped", "base base failed")
    assert states["other"][0] == "built"
    assert result.failed
    assert builder.pushed == ["other"]
    assert not any(k.startswith(("acme/base:", "acme/app:")) for k in tags_of(registry))
    lock = read_lock(manifest.lock_path)
    assert lock is not None and set(lock.images) == {"other"}
    # the next run builds exactly what failed or was skipped
    fixed = FakeBuilder(registry)
    assert {n: o.state for n, o in converge(manifest, client, fixed).outcomes.items()} == {
        "base": "built",
        "app": "built",
    }


# -- a kill at each step ---------------------------------------------------------------------

STEPS = [
    (image, step)
    for image, tags in (("base", ("1.0", "1")), ("other", ("3.0", "3")), ("app", ("2.0", "2")))
    for step in ("start", "built", "pushed", "verified", *(f"tagged:{t}" for t in tags), "recorded")
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """Registry tags and lock text of one uninterrupted run of FLEET."""
    fake = FakeRegistry()
    fake.add_image(DEBIAN, "12", {})
    manifest = write_repo(tmp_path_factory.mktemp("reference"), FLEET)
    with client_for(fake) as client:
        steps: list[tuple[str, str]] = []
        apply(manifest, plan_of(manifest, client), client, FakeBuilder(fake), steps=steps)
    # the kill test below visits every step there is; an image's steps come in order (the
    # next image may start while one finishes: verify, tag and record run off the slot)
    assert sorted(steps) == sorted(STEPS)
    for image in FLEET:
        assert [s for i, s in steps if i == image] == [s for i, s in STEPS if i == image]
    lock = read_lock(manifest.lock_path)
    assert lock is not None
    return tags_of(fake), render_lock(lock)


@pytest.mark.parametrize("kill_at", STEPS, ids=[f"{i}:{s}" for i, s in STEPS])
def test_a_kill_at_any_step_then_a_second_run_converges_to_the_same_registry_and_lock(
    tmp_path: Path,
    registry: FakeRegistry,
    client: RegistryClient,
    reference: tuple[dict[str, str], str],
    kill_at: tuple[str, str],
) -> None:
    manifest = write_repo(tmp_path, FLEET)
    seen: list[tuple[str, str]] = []
    killed = apply(
        manifest,
        plan_of(manifest, client),
        client,
        FakeBuilder(registry),
        kill_at=kill_at,
        steps=seen,
    )
    assert killed.outcomes[kill_at[0]].state == "failed"  # the run really stopped there
    after_kill = tags_of(registry)
    image, step = kill_at
    left = read_lock(manifest.lock_path)
    done = seen[: seen.index(kill_at) + 1]  # what the run did up to the kill
    recorded = set(left.images if left else ())
    assert {i for i, s in done if s == "recorded"} <= recorded  # `recorded` means durable
    # an image finishing beside the killed one may be in the lock before its event: never
    # before its last tag moved
    last_tag = {i: s for i, s in STEPS if s.startswith("tagged:")}
    by_snapshot = seen[: seen.index(SNAPSHOT)]
    assert recorded <= {i for i, s in by_snapshot if s == last_tag[i]}
    assert (f"acme/{image}:{FLEET[image][1]}.0" in after_kill) == (step not in ("start", "built"))

    builder = FakeBuilder(registry)
    again = converge(manifest, client, builder)
    assert not again.failed, {n: o.error for n, o in again.outcomes.items()}
    tags, lock_text = reference
    assert tags_of(registry) == tags
    lock = read_lock(manifest.lock_path)
    assert lock is not None and render_lock(lock) == lock_text
    # nothing is pushed twice: what the killed run pushed is adopted, not rebuilt
    assert sorted(builder.pushed) == sorted(
        n for n, (_, v) in FLEET.items() if f"acme/{n}:{v}.0" not in after_kill
    )
    assert plan_of(manifest, client).actions == ()


# -- requests per built image ----------------------------------------------------------------


def added(registry: FakeRegistry, plan: Plan) -> list[str]:
    """imagectl's requests to the images' repositories, without the floating-tag PUTs."""
    floating = {
        f"/v2/{a.repository.split('/', 1)[1]}/manifests/{t}"
        for a in plan.actions
        for t in a.floating_tags
    }
    return [
        f"{method} {path}"
        for method, path in registry.calls
        if path.startswith("/v2/acme/") and not (method == "PUT" and path in floating)
    ]


def test_a_run_adds_at_most_two_requests_per_built_image(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    manifest = write_repo(tmp_path, FLEET)
    builder = FakeBuilder(registry)
    registry.calls.clear()
    first = plan_of(manifest, client)  # a first build: the repositories do not exist
    assert {o.state for o in apply(manifest, first, client, builder).outcomes.values()} == {"built"}
    assert len(added(registry, first)) <= 2 * len(FLEET), added(registry, first)

    registry.add_image(DEBIAN, "12", {"fix": "yes"})  # the base moved: everything rebuilds
    registry.calls.clear()
    update = plan_of(manifest, client)
    assert len(update.actions) == len(FLEET)
    assert {o.state for o in apply(manifest, update, client, builder).outcomes.values()} == {
        "built"
    }
    requests = added(registry, update)
    # per image: the plan's HEAD of the new version tag, then one GET after the push
    assert sorted(requests) == sorted(
        f"{m} /v2/acme/{n}/manifests/{v}.1" for n, (_, v) in FLEET.items() for m in ("HEAD", "GET")
    )
    tags = tags_of(registry)
    for name, (_, version) in FLEET.items():
        major = version.split(".")[0]
        assert tags[f"acme/{name}:{version}"] == tags[f"acme/{name}:{major}"]
        assert tags[f"acme/{name}:{version}"] == tags[f"acme/{name}:{version}.1"]


@pytest.mark.parametrize("identify", [True, False])
def test_the_image_id_tells_this_runs_build_else_the_config_does(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient, identify: bool
) -> None:
    manifest = write_repo(tmp_path, {"base": ("", "1.0")})
    plan = plan_of(manifest, client)
    builder = FakeBuilder(registry, identify=identify)
    registry.calls.clear()
    result = apply(manifest, plan, client, builder)
    assert result.outcomes["base"].state == "built"
    config = digest_of(config_blob(dict(builder.built[0].labels)))
    assert (("GET", f"/v2/acme/base/blobs/{config}") in registry.calls) is not identify


def test_a_build_that_may_be_rebased_still_adds_at_most_two_requests(
    tmp_path: Path, registry: FakeRegistry, client: RegistryClient
) -> None:
    """`update: auto`: verify keeps the manifest it read for the image's next rebase and
    reads nothing more for it (the config stays that rebase's to read), so a build of an
    image that may be rebased keeps the promise of at most 2 requests beyond its push."""
    write_repo(tmp_path, FLEET)
    path = tmp_path / "imagectl.yaml"
    path.write_text(path.read_text() + "defaults:\n  update: auto\n")
    manifest = load_manifest(path)
    plan = plan_of(manifest, client)
    registry.calls.clear()
    result = apply(manifest, plan, client, FakeBuilder(registry))
    assert {o.state for o in result.outcomes.values()} == {"built"}
    assert len(added(registry, plan)) <= 2 * len(FLEET), added(registry, plan)
    lock = read_lock(manifest.lock_path)
    assert lock is not None
    kept = PublishedDocs.of(manifest.root_dir)
    for name in FLEET:
        assert set(kept.load(name)) == {lock.images[name].digest}  # the manifest only
