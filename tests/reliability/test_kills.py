"""SIGKILL `imagectl apply` at each step of the per-image protocol, then re-run it.

The hook `IMAGECTL_FAULT_KILL_AT=<image>:<step>` (imagectl/apply/protocol.py) makes
the process SIGKILL itself at that step; `*:commit` is just before the git commit.
After every kill a plain re-run must reach exactly the state of an uninterrupted
run: the same versions (none skipped, none reused), no immutable tag repointed,
floating tags on the newest build, the lock equal to the registry and committed,
and an empty re-plan.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import LABEL_BASE_DIGEST, Repo, UpstreamFactory
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

IMAGES = {"base": "upstream", "app": "base"}  # app is built on base, base on the upstream
FLOATING = ("1.0", "1")
KILL_ENV = "IMAGECTL_FAULT_KILL_AT"


def pushed_versions(repo: Repo) -> dict[tuple[str, str], str]:
    """Every immutable (image, version) in the registry and its digest."""
    found = {}
    for image in IMAGES:
        for version in repo.versions(image):
            digest = repo.digest(image, version)
            assert digest is not None
            found[(image, version)] = digest
    return found


def kill(repo: Repo, point: str) -> subprocess.CompletedProcess[str]:
    killed = repo.run("apply", "--jobs", "1", env={KILL_ENV: point})
    assert killed.returncode == -signal.SIGKILL, (
        f"the kill hook {point} did not fire:\n{killed.stdout}{killed.stderr}"
    )
    return killed


def rerun_counts(out: str) -> dict[str, int]:
    """`Apply: 1 built, 1 adopted, 0 failed.` -> {"built": 1, "adopted": 1, "failed": 0}."""
    match = re.search(r"Apply: (.*)\.", out)
    assert match, out
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", match.group(1))}


def assert_like_uninterrupted(
    repo: Repo, history: list[str], before: dict[tuple[str, str], str]
) -> None:
    """The end state of an uninterrupted run whose version history is `history`."""
    lock = repo.lock()
    assert sorted(lock) == sorted(IMAGES)
    newest = history[-1]
    for image in IMAGES:
        record = lock[image]
        assert record["version"] == newest, (image, record["version"])
        # every version exactly once, in order: none skipped, none reused
        assert repo.versions(image) == history, (image, repo.versions(image))
        assert sorted(record["versions"]) == history  # type: ignore[arg-type]
        digest = record["digest"]
        assert repo.digest(image, newest) == digest
        for tag in FLOATING:
            assert repo.digest(image, tag) == digest, f"{image}:{tag} is not on {newest}"
        labels = repo.labels(image, newest)
        assert labels["dev.imagectl.inputs"] == record["inputs"]
        assert labels["org.opencontainers.image.version"] == newest
    assert repo.labels("app", newest)[LABEL_BASE_DIGEST] == lock["base"]["digest"]
    # what was pushed before the kill was never repointed
    after = pushed_versions(repo)
    for key, digest in before.items():
        assert after[key] == digest, f"immutable tag {key} moved"
    assert repo.lock_committed(), repo.git("status", "--porcelain")
    assert repo.planned() == []


# after the build, after the immutable push, after one floating tag, after the lock
# write (of base; app not started yet), and in the second image after its push
FRESH_POINTS = ["base:built", "base:pushed", "base:tagged:1.0", "base:recorded", "app:pushed"]


@pytest.mark.parametrize("point", FRESH_POINTS)
def test_kill_during_first_apply_then_rerun_equals_uninterrupted(
    point: str, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    with result("kills", f"first apply, SIGKILL at {point}", f"{KILL_ENV}={point}") as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream)
        kill(repo, point)
        before = pushed_versions(repo)
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        counts = rerun_counts(rerun.stdout)
        assert_like_uninterrupted(repo, ["1.0.0"], before)
        if ("base", "1.0.0") in before:  # pushed before the kill: adopted, not rebuilt
            assert "base" not in rebuilt(rerun.stdout)
        rec.count = counts.get("built", 0)
        rec.observed = (
            f"left {len(before)} pushed version(s); re-run {counts}; "
            "end state equals an uninterrupted run"
        )


def rebuilt(out: str) -> set[str]:
    """Images whose summary row says `built` (not adopted)."""
    return set(re.findall(r"│ (\w+)\s+│[^\n]*│ built\s+│", out))


@pytest.mark.parametrize("point", ["base:pushed", "base:recorded", "app:tagged:1.0"])
def test_kill_during_update_then_rerun_equals_uninterrupted(
    point: str, make_repo: Callable[..., Repo], upstream: UpstreamFactory, proxy: FaultProxy
) -> None:
    with result("kills", f"update apply, SIGKILL at {point}", f"{KILL_ENV}={point}") as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        repo.ok("apply", "--jobs", "1")
        upstream("v2: security fix")  # the vendor re-publishes the base
        assert repo.planned() == ["base", "app"]
        if point == "app:tagged:1.0":
            # an image's tag PUTs are sent at once: the killed run's PUT of `1` is refused,
            # so the kill after `1.0` moved always leaves `1` on the old build
            path = rf"/{repo.namespace}/app/manifests/1$"
            refused = proxy.add("status", "PUT", path, status=400)
        kill(repo, point)
        if point == "app:tagged:1.0":
            assert refused.hits == 1
            assert (
                repo.digest("app", "1") == repo.digest("app", "1.0.0") != repo.digest("app", "1.0")
            )
        before = pushed_versions(repo)
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert_like_uninterrupted(repo, ["1.0.0", "1.0.1"], before)
        # 1.0.1 is built on the vendor's update, 1.0.0 still on the original
        assert (
            repo.labels("base", "1.0.1")[LABEL_BASE_DIGEST]
            != repo.labels("base", "1.0.0")[LABEL_BASE_DIGEST]
        )
        counts = rerun_counts(rerun.stdout)
        rec.count = counts.get("built", 0)
        rec.observed = f"left {len(before)} pushed version(s); re-run {counts}; consistent"


def test_kills_twice_in_a_row_converge(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    """Killed after the push, then the re-run killed right after it adopted: still converges."""
    injected = f"{KILL_ENV}=base:pushed, then {KILL_ENV}=base:adopted on the re-run"
    with result("kills", "killed twice: after push, then after adoption", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream)
        kill(repo, "base:pushed")
        before = pushed_versions(repo)
        kill(repo, "base:adopted")
        assert pushed_versions(repo) == before, "the adopting run pushed something"
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "base" not in rebuilt(rerun.stdout)
        assert_like_uninterrupted(repo, ["1.0.0"], before)
        rec.count = rerun_counts(rerun.stdout).get("adopted", 0)
        rec.observed = "base adopted twice, never rebuilt; end state equals an uninterrupted run"


def test_kill_before_git_commit_then_rerun_commits_the_lock(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    with result("kills", "SIGKILL just before the git commit", f"{KILL_ENV}=*:commit") as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream)
        head = repo.git("rev-parse", "HEAD")
        kill(repo, "*:commit")
        assert repo.git("rev-parse", "HEAD") == head, "committed before the kill point"
        assert sorted(repo.lock()) == ["app", "base"]
        before = pushed_versions(repo)
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "Nothing to do" in rerun.stdout
        assert_like_uninterrupted(repo, ["1.0.0"], before)
        message = repo.git("log", "-1", "--format=%B")
        assert "base - -> 1.0.0" in message and "app - -> 1.0.0" in message, message
        rec.count = 1
        rec.observed = "re-run with nothing to build committed the lock the killed run wrote"


def test_kill_after_push_then_rerun_in_a_fresh_clone(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, tmp_path: Path
) -> None:
    """CI runs from a fresh clone: whatever the killed run left in its work tree is gone."""
    injected = f"{KILL_ENV}=base:pushed on the first apply, re-run in a fresh clone"
    with result(
        "kills", "first apply killed after push, re-run from a fresh clone", injected
    ) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream)
        kill(repo, "base:pushed")
        before = pushed_versions(repo)
        clone_root = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(repo.root), str(clone_root)], check=True)
        clone = Repo(clone_root, repo.registry, repo.namespace)
        rerun = clone.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert_like_uninterrupted(clone, ["1.0.0"], before)
        rec.count = rerun_counts(rerun.stdout).get("built", 0)
        rec.observed = "fresh clone's re-run reached the uninterrupted end state"
