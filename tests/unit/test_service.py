"""The service layer and the run's one record owner, in-process.

The registry is the in-memory fake behind the real RegistryClient, the builder the
fake builder; git is real (a repository in tmp_path). What is checked: the service
applies the plan it is given (no second plan), makes exactly one record commit per
run, images found in the registry go into that same commit, and the revision is the
HEAD the plan saw.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imagectl import service
from imagectl.apply.engine import ApplyOptions, ApplyResult
from imagectl.apply.protocol import Outcome
from imagectl.errors import ExitCode
from imagectl.lockfile import read_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Plan, PlanOptions
from imagectl.ports import Registry
from imagectl.registry import RegistryClient
from tests.fixtures.fake_builder import FakeBuilder
from tests.fixtures.fake_registry import FakeRegistry
from tests.unit import test_apply_protocol as protocol_tests
from tests.unit.test_apply_protocol import FLEET, NOW, write_repo

# the in-memory registry (with the Debian base) and a client of it: the protocol tests' own
registry = protocol_tests.registry
client = protocol_tests.client


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Manifest:
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "Platform")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "platform@acme.test")
    root = tmp_path / "gitops"
    root.mkdir()
    manifest = write_repo(root, FLEET)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return manifest


def apply(
    manifest: Manifest,
    registry: Registry,
    builder: FakeBuilder,
    *,
    refresh: bool = False,
) -> service.Applied:
    """What `imagectl apply` does, without a console: plan, prepare, run."""
    planned: list[Plan] = []

    def planner(current: Manifest) -> service.Planned:
        made = service.plan(current, registry, now=NOW, options=PlanOptions(), refresh=refresh)
        planned.append(made.plan)
        return made

    prepared = service.prepare(
        manifest,
        ApplyOptions(),
        first=planner(manifest),
        replan=planner,
        worktree=manifest.root_dir,
    )
    assert len(planned) == 1, "prepare planned again: the plan it was given is applied"
    if isinstance(prepared, service.Applied):
        return prepared
    return service.run(prepared, registry, builders={"docker": builder})


def subjects(root: Path) -> list[str]:
    return git(root, "log", "--format=%s").splitlines()


def test_the_registry_client_is_a_registry(client: RegistryClient) -> None:
    registry: Registry = client  # mypy checks the client against the protocol
    assert registry is client


def test_applied_maps_to_the_exit_codes() -> None:
    plan = Plan(actions=(), unchanged=())
    assert service.Applied(plan).exit_code is ExitCode.OK
    failed = ApplyResult(outcomes={"a": Outcome("a", state="failed")})
    assert service.Applied(plan, failed).exit_code is ExitCode.FAILED
    stopped = ApplyResult(outcomes={}, interrupted=True)
    assert service.Applied(plan, stopped).exit_code is ExitCode.INTERRUPTED
    assert service.Applied(plan, ApplyResult(outcomes={})).exit_code is ExitCode.OK


def test_one_run_one_record_commit_at_the_revision_the_plan_saw(
    repo: Manifest, client: RegistryClient, registry: FakeRegistry
) -> None:
    seen = git(repo.root_dir, "rev-parse", "HEAD")
    applied = apply(repo, client, FakeBuilder(registry))
    assert applied.exit_code is ExitCode.OK
    assert applied.commit is not None
    assert subjects(repo.root_dir) == ["imagectl: rebuild 3 images", "init"]
    lock = read_lock(repo.lock_path)
    assert lock is not None
    assert {r.revision for r in lock.images.values()} == {seen}
    assert git(repo.root_dir, "status", "--porcelain") == ""


def test_images_found_in_the_registry_go_into_the_runs_one_commit(
    repo: Manifest, client: RegistryClient, registry: FakeRegistry
) -> None:
    root = repo.root_dir
    apply(repo, client, FakeBuilder(registry))
    built = read_lock(repo.lock_path)
    assert built is not None
    git(root, "rm", "-q", "imagectl.lock")  # the lock is lost...
    (root / "other" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n# v2\n")
    git(root, "commit", "-qam", "lose the lock; change other")  # ...and other changes
    manifest = load_manifest(root / "imagectl.yaml")

    applied = apply(manifest, client, FakeBuilder(registry), refresh=True)
    assert applied.exit_code is ExitCode.OK
    assert subjects(root)[:2] == ["imagectl: rebuild 3 images", "lose the lock; change other"]
    body = git(root, "log", "-1", "--format=%b").splitlines()
    assert body == [
        "other 3.0.0 -> 3.0.1 (inputs-changed)",
        "app - -> 2.0.0 (recovered from the registry)",
        "base - -> 1.0.0 (recovered from the registry)",
    ], body
    lock = read_lock(repo.lock_path)
    assert lock is not None
    for name in ("base", "app"):  # as recorded by the run that built them
        was, now = built.images[name], lock.images[name]
        assert (now.digest, now.revision, sorted(now.tags)) == (
            was.digest,
            was.revision,
            sorted(was.tags),
        )


def test_nothing_to_build_still_commits_what_was_found(
    repo: Manifest, client: RegistryClient, registry: FakeRegistry
) -> None:
    root = repo.root_dir
    apply(repo, client, FakeBuilder(registry))
    git(root, "rm", "-q", "imagectl.lock")
    git(root, "commit", "-qm", "lose the lock")
    manifest = load_manifest(root / "imagectl.yaml")
    applied = apply(manifest, client, FakeBuilder(registry), refresh=True)
    assert applied.result is None and applied.commit is not None
    assert subjects(root)[0] == "imagectl: record 3 images found in the registry"
