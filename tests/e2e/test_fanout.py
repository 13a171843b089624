"""The GitHub Actions fan-out (examples/.github/workflows/fan-out.yml), simulated.

One bare remote; a plan job saves the plan; one clone per level runner applies
`--only IMAGE --refresh --no-git`; the record job, in another clone, applies the saved
plan with `--git-push`. Real registry, real docker builds, real git.

The record job must make ONE record commit (after its claim commit) naming every image
of the plan as `name old -> new (reasons)`, whichever runner built it, and record
every image with the revision the plan saw and all its tags.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from devenv.registry import RegistryServer
from tests.e2e import test_reconcile as reconcile
from tests.e2e.test_reconcile import GIT_ENV, GitOps, UpstreamFactory, make_gitops

pytestmark = pytest.mark.e2e

ENV = {**os.environ, **GIT_ENV}
upstream = reconcile.upstream  # the fixture: a unique upstream base per test


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def clone(remote: Path, at: Path, origin: GitOps) -> GitOps:
    """A runner's checkout of the remote (a fresh clone: nothing but what git holds)."""
    subprocess.run(["git", "clone", "-q", str(remote), str(at)], check=True, env=ENV)
    return GitOps(at, origin.host, origin.namespace)


def test_fan_out_records_every_image_in_one_commit(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    first = make_gitops(
        tmp_path, builder_registry.host, ref, images={"base": "upstream", "py": "base", "app": "py"}
    )
    first.ok("apply")  # 1.0.0 of each, recorded and committed
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(first.root, "remote", "add", "origin", str(remote))
    git(first.root, "push", "-q", "-u", "origin", "main")
    upstream("vendor build 2")  # every image is now stale: three levels

    # the plan job
    planner = clone(remote, tmp_path / "plan-job", first)
    saved = tmp_path / "artifact" / "plan.json"
    plan = json.loads(planner.ok("plan", "--refresh", "--json", "--out", str(saved)))
    planned = {a["image"]: a for a in plan["actions"]}
    assert sorted(planned) == ["app", "base", "py"]
    revision = git(planner.root, "rev-parse", "HEAD")

    # level runners: base (level 0) and py (level 1) each on its own runner, no git
    for level, image in enumerate(("base", "py")):
        runner = clone(remote, tmp_path / f"level-{level}", first)
        out = runner.ok("apply", "--only", image, "--refresh", "--no-git")
        assert "1 built" in out, out
        assert git(runner.root, "rev-parse", "HEAD") == revision, "a --no-git runner committed"

    # the record job: builds what is left (app, as a level past the last runner would be)
    recorder = clone(remote, tmp_path / "record-job", first)
    out = recorder.ok("apply", str(saved), "--git-push")
    assert "1 built" in out and "2 adopted" in out, out

    subjects = git(remote, "log", "--format=%s", "main").splitlines()
    assert subjects[:3] == [
        "imagectl: rebuild 3 images",
        "imagectl: claim 3 images",
        "imagectl: rebuild 3 images",  # the first apply
    ], subjects
    body = git(remote, "log", "-1", "--format=%b", "main").splitlines()
    lines = [line for line in body if line.split(" ", 1)[0] in planned]
    assert lines == [
        "base 1.0.0 -> 1.0.1 (base-updated)",
        "py 1.0.0 -> 1.0.1 (base-rebuilt)",
        "app 1.0.0 -> 1.0.1 (base-rebuilt)",
    ], body

    committed = YAML(typ="safe").load(git(remote, "show", "main:imagectl.lock"))
    for name, action in planned.items():
        record = committed["images"][name]
        assert record["version"] == "1.0.1"
        assert record["revision"] == revision, (name, record)
        assert sorted(record["tags"]) == sorted(action["tags"]), (name, record["tags"])
        assert {"1.0.1", "1.0", "1"} <= set(record["tags"])
        assert record["digest"] == recorder.digest(name, "1.0.1") == recorder.digest(name, "1")
        labels = recorder.labels(name, "1.0.1")
        assert labels["org.opencontainers.image.revision"] == revision
    assert "claims" not in committed
    assert recorder.plan()["actions"] == []


def test_the_revision_is_fixed_once_per_run(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    """Under --git-push the claim commit moves HEAD before anything is built: the `{sha}`
    tag, the revision label and the lock's `revision` still name the HEAD the plan saw
    (`-dirty` with --allow-dirty)."""
    repo = make_gitops(
        tmp_path, builder_registry.host, upstream("vendor build 1"), images={"base": "upstream"}
    )
    manifest = repo.root / "imagectl.yaml"
    manifest.write_text(
        manifest.read_text() + '        tags: ["{version}", "{major}", "sha-{sha}"]\n'
    )
    git(repo.root, "commit", "-qam", "a {sha} tag")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(repo.root, "remote", "add", "origin", str(remote))
    git(repo.root, "push", "-q", "-u", "origin", "main")

    for version, dirty in (("1.0.0", False), ("1.0.1", True)):
        seen = git(repo.root, "rev-parse", "HEAD")
        if dirty:
            (repo.root / "base" / "base.txt").write_text("base v2 (uncommitted)\n")
            repo.ok("apply", "--git-push", "--allow-dirty")
        else:
            repo.ok("apply", "--git-push")
        subjects = git(remote, "log", "--format=%s", "-2", "main").splitlines()
        assert subjects == ["imagectl: rebuild 1 image", "imagectl: claim 1 image"], subjects
        assert git(remote, "rev-parse", "main~2") == seen
        expected = seen + ("-dirty" if dirty else "")
        record = repo.lock()["images"]["base"]  # type: ignore[index]
        assert record["version"] == version
        assert record["revision"] == expected
        assert repo.labels("base", version)["org.opencontainers.image.revision"] == expected
        assert f"sha-{seen[:7]}" in record["tags"], record["tags"]
        assert repo.digest("base", f"sha-{seen[:7]}") == record["digest"]
