"""Git stays in step with the registry, and what is published is what is committed.

Real git repositories (with a bare remote where pushing matters), the real registry
and dockerd, driven through the CLI as cron or the daemon would.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import Gate, Repo, UpstreamFactory
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

LABEL_REVISION = "org.opencontainers.image.revision"


def add_remote(repo: Repo, tmp_path: Path) -> Path:
    """A bare remote `origin` that `repo`'s main branch tracks."""
    remote = tmp_path / f"{repo.root.name}-remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo.git("remote", "add", "origin", str(remote))
    repo.git("push", "-q", "-u", "origin", "main")
    return remote


def clone(remote: Path, dest: Path, like: Repo) -> Repo:
    subprocess.run(["git", "clone", "-q", str(remote), str(dest)], check=True)
    return Repo(dest, like.registry, like.namespace)


def git_out(git_dir: Path, *args: str) -> str:
    """The output of git in `git_dir` (a work tree or a bare remote)."""
    return subprocess.run(
        ["git", *args], cwd=git_dir, capture_output=True, text=True, check=True
    ).stdout


def subjects(git_dir: Path, ref: str = "main") -> list[str]:
    return git_out(git_dir, "log", "--format=%s", ref).splitlines()


def head(repo: Repo) -> str:
    return repo.git("rev-parse", "HEAD").strip()


# ---------------------------------------------------------------------------- provenance


def test_uncommitted_inputs_refuse_apply_before_anything_is_built(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = (
        "a modified context file, an untracked context file, an edited manifest; "
        "an ignored file and an untracked file outside every context"
    )
    with result("security", "apply from uncommitted inputs", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", {"alpha": "upstream", "beta": "upstream"}, upstream)
        (repo.root / ".gitignore").write_text("*.log\n")
        repo.commit_all("ignore logs")
        (repo.root / "alpha" / "alpha.txt").write_text("edited, not committed\n")
        (repo.root / "beta" / "new.txt").write_text("untracked\n")
        (repo.root / "alpha" / "build.log").write_text("ignored\n")
        (repo.root / "NOTES.md").write_text("not an input\n")
        refused = repo.run("apply")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        message = " ".join(refused.stderr.split())
        assert "alpha/alpha.txt" in message and "beta/new.txt" in message, message
        assert "build.log" not in message and "NOTES.md" not in message, message
        assert "--allow-dirty" in message and "Traceback" not in refused.stderr
        assert repo.tags("alpha") == [] and repo.tags("beta") == [], "pushed before the check"
        assert not (repo.root / "imagectl.lock").exists()
        assert subjects(repo.root) == ["ignore logs", "init"]

        repo.manifest.write_text(repo.manifest.read_text() + "# edited\n")
        refused = repo.run("apply", "--only", "beta")
        assert refused.returncode == 1 and "imagectl.yaml" in refused.stderr, refused.stderr
        assert "alpha/alpha.txt" not in refused.stderr  # alpha is not in this run

        dirty = f"{head(repo)}-dirty"
        allowed = repo.run("apply", "--allow-dirty")
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert dirty in allowed.stdout
        for image in ("alpha", "beta"):
            assert repo.labels(image, "1.0.0")[LABEL_REVISION] == dirty
            assert repo.lock()[image]["revision"] == dirty
        assert repo.lock_committed()  # the lock itself never counts as an input
        rec.count = 3
        rec.observed = (
            "refused with exit 1 naming the 2 changed context files (not the ignored or "
            "unrelated ones), then the edited manifest; nothing built or pushed; "
            "--allow-dirty labelled and locked <sha>-dirty"
        )


def test_outside_git_there_is_no_check(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    upstream("v1")
    repo = make_repo("plain", {"alpha": "upstream"}, upstream)
    shutil.rmtree(repo.root / ".git")
    (repo.root / "alpha" / "alpha.txt").write_text("edited\n")
    repo.ok("apply")
    assert LABEL_REVISION not in repo.labels("alpha", "1.0.0")
    assert repo.lock()["alpha"]["revision"] is None


# ---------------------------------------------------------------------------- lock commits


def test_a_failed_apply_that_built_nothing_leaves_no_commit_and_no_lock(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    upstream("v1")
    broken = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN exit 3\n"
    repo = make_repo("gitops", {"alpha": "upstream"}, upstream, dockerfiles={"alpha": broken})
    failed = repo.run("apply")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert subjects(repo.root) == ["init"]
    assert not (repo.root / "imagectl.lock").exists()
    assert repo.git("status", "--porcelain") == ""


def test_nothing_to_build_still_commits_the_lock_and_pushes_the_branch(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, tmp_path: Path
) -> None:
    injected = (
        "an apply killed just before its git commit, and an apply whose commit was never "
        "pushed; the next runs have nothing to build"
    )
    with result("faults", "lock left uncommitted or unpushed", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", {"alpha": "upstream"}, upstream)
        remote = add_remote(repo, tmp_path)
        killed = repo.run("apply", env={"IMAGECTL_FAULT_KILL_AT": "*:commit"})
        assert killed.returncode == -9, killed.stdout + killed.stderr
        assert not repo.lock_committed()

        quiet = repo.run("daemon", "--once", "--git-push")  # a tick with nothing to build
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert "tick: nothing to do" in quiet.stdout
        assert repo.lock_committed()
        assert subjects(remote)[0] == "imagectl: rebuild 1 image"
        assert subjects(remote) == subjects(repo.root)

        upstream("v2")
        repo.ok("apply")  # committed, not pushed
        assert len(subjects(remote)) == len(subjects(repo.root)) - 1
        out = repo.ok("apply", "--git-push")
        assert "Nothing to do" in out and "Pushed the branch" in out, out
        assert subjects(remote) == subjects(repo.root)
        rec.count = 2
        rec.observed = (
            "a daemon tick with nothing to build committed and pushed the lock; an apply "
            "with nothing to build pushed the branch that was ahead"
        )


# ---------------------------------------------------------------------------- pulling


def test_daemon_pulls_merged_changes_and_skips_a_diverged_branch(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, tmp_path: Path
) -> None:
    injected = (
        "a change to alpha merged upstream while the daemon's checkout is behind; then "
        "a local commit while the remote moved again"
    )
    with result("faults", "daemon behind or diverged from its upstream", injected) as rec:
        upstream("v1")
        daemon = make_repo("daemon", {"alpha": "upstream"}, upstream)
        remote = add_remote(daemon, tmp_path)
        first = daemon.run("daemon", "--once", "--git-push")
        assert first.returncode == 0 and "applied 1 image" in first.stdout, first.stdout
        dev = clone(remote, tmp_path / "dev", daemon)
        (dev.root / "alpha" / "alpha.txt").write_text("alpha v2\n")
        dev.commit_all("alpha: v2")
        dev.git("push", "-q")

        tick = daemon.run("daemon", "--once", "--git-push")
        assert tick.returncode == 0, tick.stdout + tick.stderr
        assert "tick: pulled 1 commit, applied 1 image" in tick.stdout, tick.stdout
        assert daemon.versions("alpha") == ["1.0.0", "1.0.1"]
        assert subjects(remote)[:3] == [
            "imagectl: rebuild 1 image",
            "imagectl: claim 1 image",
            "alpha: v2",
        ]
        assert subjects(remote) == subjects(daemon.root)  # pushed fast-forward

        daemon.git("commit", "-q", "--allow-empty", "-m", "local only")
        dev.git("pull", "-q", "--ff-only")
        (dev.root / "alpha" / "alpha.txt").write_text("alpha v3\n")
        dev.commit_all("alpha: v3")
        dev.git("push", "-q")
        skipped = daemon.run("daemon", "--once", "--git-push")
        assert skipped.returncode == 1, skipped.stdout + skipped.stderr
        log = " ".join(skipped.stdout.split())
        assert "tick: failed:" in log and "diverged" in log and "never merges" in log, log
        assert daemon.versions("alpha") == ["1.0.0", "1.0.1"], "built on a diverged branch"
        assert subjects(remote)[0] == "alpha: v3", "the remote was overwritten"
        assert subjects(daemon.root)[0] == "local only"
        rec.count = 2
        rec.observed = (
            "the tick fast-forwarded, rebuilt the merged change and pushed fast-forward; "
            "the diverged tick was reported and skipped, nothing merged or forced"
        )


def test_apply_pull_fast_forwards_before_planning(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, tmp_path: Path
) -> None:
    upstream("v1")
    cron = make_repo("cron", {"alpha": "upstream"}, upstream)
    remote = add_remote(cron, tmp_path)
    cron.ok("apply", "--git-push")
    dev = clone(remote, tmp_path / "dev", cron)
    (dev.root / "alpha" / "alpha.txt").write_text("alpha v2\n")
    dev.commit_all("alpha: v2")
    dev.git("push", "-q")
    out = cron.ok("apply", "--pull", "--git-push")
    assert "Pull: origin/main: fast-forwarded 1 commit" in out, out
    assert cron.lock()["alpha"]["version"] == "1.0.1"
    assert subjects(remote)[:3] == [
        "imagectl: rebuild 1 image",
        "imagectl: claim 1 image",
        "alpha: v2",
    ]


def test_a_remote_that_moves_during_the_build_gets_the_record_on_top(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate, tmp_path: Path
) -> None:
    injected = (
        "a commit lands on the remote while an apply --git-push is building (after its claim)"
    )
    with result("faults", "remote moves between claim and record", injected) as rec:
        token = gate.token()
        upstream("v1")
        repo = make_repo(
            "gitops",
            {"alpha": "upstream"},
            upstream,
            dockerfiles={"alpha": gate.dockerfile("alpha", token)},
        )
        remote = add_remote(repo, tmp_path)
        run = repo.start("apply", "--git-push")
        gate.wait_arrived(token)  # claimed and pushed; building
        assert subjects(remote)[0] == "imagectl: claim 1 image"
        dev = clone(remote, tmp_path / "dev", repo)
        (dev.root / "NOTES.md").write_text("meanwhile\n")
        dev.commit_all("docs: meanwhile")
        dev.git("push", "-q")
        gate.release(token)
        assert run.wait() == 0, run.output
        assert subjects(remote)[:3] == [
            "imagectl: rebuild 1 image",
            "docs: meanwhile",
            "imagectl: claim 1 image",
        ]
        assert subjects(remote) == subjects(repo.root)
        assert (repo.root / "NOTES.md").exists()
        committed = git_out(remote, "show", "main:imagectl.lock")
        assert "claims:" not in committed and repo.digest("alpha", "1.0.0") in committed
        assert repo.lock_committed() and repo.planned() == []
        rec.count = 1
        rec.observed = (
            "the final push was refused; the run fast-forwarded to the remote, re-applied "
            "its record and pushed on top, never forcing"
        )
