"""Full reconcile stories on a real dockerd/buildah, a real registry and a real git repository.

Each test reads like a platform team's day: apply a fresh family; re-plan is empty;
the upstream base moves; exactly the dependents rebuild with the next versions;
floating tags move, immutable ones do not; re-plan is empty again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from tests.fixtures.builders import manifest_digest, registry_get

pytestmark = pytest.mark.e2e

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform",
    "GIT_AUTHOR_EMAIL": "platform@acme.test",
    "GIT_COMMITTER_NAME": "Platform",
    "GIT_COMMITTER_EMAIL": "platform@acme.test",
}

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN mkdir -p /etc/acme && echo {name} >> /etc/acme/layers
COPY {name}.txt /etc/acme/{name}.txt
"""


@dataclass
class GitOps:
    """A git-ops repository under test and helpers to drive the real CLI on it."""

    root: Path
    host: str
    namespace: str

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagectl", "-f", str(self.root / "imagectl.yaml"), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV, **(env or {})},
            timeout=600,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def plan(self) -> dict[str, object]:
        return json.loads(self.ok("plan", "--json"))

    def lock(self) -> dict[str, object]:
        data = YAML(typ="safe").load((self.root / "imagectl.lock").read_text())
        assert isinstance(data, dict)
        return data

    def digest(self, image: str, tag: str) -> str:
        return manifest_digest(self.host, f"{self.namespace}/{image}", tag)

    def labels(self, image: str, tag: str) -> dict[str, str]:
        manifest = json.loads(registry_get(self.host, f"{self.namespace}/{image}/manifests/{tag}"))
        config = json.loads(
            registry_get(
                self.host, f"{self.namespace}/{image}/blobs/{manifest['config']['digest']}"
            )
        )
        return dict(config["config"]["Labels"])

    def git_log(self) -> list[str]:
        out = subprocess.run(
            ["git", "log", "--format=%B%x00"], cwd=self.root, capture_output=True, text=True
        ).stdout
        return [m.strip() for m in out.split("\0") if m.strip()]


def make_gitops(
    tmp_path: Path,
    host: str,
    upstream_ref: str,
    *,
    builder: str = "docker",
    images: dict[str, str] | None = None,
) -> GitOps:
    """A manifest: base on the upstream; py and node on base; app on py."""
    namespace = f"acme-{uuid.uuid4().hex[:8]}"
    images = images or {"base": "upstream", "py": "base", "node": "base", "app": "py"}
    root = tmp_path / "gitops"
    root.mkdir()
    lines = [
        "version: 1",
        f"registry: {host}/{namespace}",
        "defaults:",
        f"  builder: {builder}",
        "  network: host",
        "bases:",
        "  upstream:",
        f"    ref: {upstream_ref}",
        "families:",
        "  all:",
        "    images:",
    ]
    for name, base in images.items():
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(DOCKERFILE.format(name=name))
        (root / name / f"{name}.txt").write_text(f"{name} v1\n")
        lines += [
            f"      {name}:",
            f"        from: {base}",
            f"        context: {name}",
            '        version: "1.0"',
        ]
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=root, check=True, env={**os.environ, **GIT_ENV})
    return GitOps(root, host, namespace)


UpstreamFactory = Callable[[str], str]


@pytest.fixture
def upstream(builder_registry: RegistryServer, dockerd: str) -> Callable[[str], str]:
    """Publish (or re-publish) a unique upstream base; returns its reference by tag."""
    repository = f"upstream/debian-{uuid.uuid4().hex[:8]}"

    def publish(marker: str) -> str:
        push_upstream_base(builder_registry.host, repository, "stable", marker)
        return f"{builder_registry.host}/{repository}:stable"

    return publish


def applied_base_and_py(
    tmp_path: Path, registry: RegistryServer, upstream: UpstreamFactory
) -> GitOps:
    """A git-ops repo of `base` (on the upstream) and `py` (on base), applied once."""
    ref = upstream("vendor build 1")
    repo = make_gitops(tmp_path, registry.host, ref, images={"base": "upstream", "py": "base"})
    repo.ok("apply")
    return repo


def test_story_fresh_apply_then_base_update_rebuilds_exactly_the_dependents(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(tmp_path, builder_registry.host, ref)

    out = repo.ok("apply", "--jobs", "2")
    assert "4 built" in out
    lock = repo.lock()
    images = lock["images"]
    assert isinstance(images, dict)
    assert {n: images[n]["version"] for n in images} == {
        "app": "1.0.0",
        "base": "1.0.0",
        "node": "1.0.0",
        "py": "1.0.0",
    }
    for name in images:
        assert repo.digest(name, "1.0.0") == images[name]["digest"]
        assert repo.digest(name, "1") == images[name]["digest"]
    labels = repo.labels("py", "1.0.0")
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.base.digest"] == images["base"]["digest"]
    assert labels["org.opencontainers.image.base.name"].endswith(f"{repo.namespace}/base:1.0.0")
    assert labels["dev.imagectl.inputs"] == images["py"]["inputs"]
    assert labels["org.opencontainers.image.title"] == "py"
    head = repo.git_log()[0]
    assert head.startswith("imagectl: rebuild 4 images")
    assert "py - -> 1.0.0 (new)" in head.splitlines()  # as the plan table: `- -> 1.0.0`

    assert repo.plan()["actions"] == []
    assert repo.run("plan", "--detailed-exitcode").returncode == 0

    old = {name: images[name]["digest"] for name in images}
    upstream("vendor build 2: security fix")
    plan = repo.plan()
    actions = {
        a["image"]: (a["reasons"], a["from_version"], a["to_version"]) for a in plan["actions"]
    }
    assert actions == {
        "base": (["base-updated"], "1.0.0", "1.0.1"),
        "py": (["base-rebuilt"], "1.0.0", "1.0.1"),
        "node": (["base-rebuilt"], "1.0.0", "1.0.1"),
        "app": (["base-rebuilt"], "1.0.0", "1.0.1"),
    }
    assert repo.run("plan", "--detailed-exitcode").returncode == 2

    repo.ok("apply")
    new = repo.lock()["images"]
    assert isinstance(new, dict)
    for name in old:
        assert repo.digest(name, "1.0.0") == old[name], "an immutable tag moved"
        assert repo.digest(name, "1.0.1") == new[name]["digest"]
        assert repo.digest(name, "1.0") == new[name]["digest"], "floating tag did not move"
        assert new[name]["digest"] != old[name]
    assert repo.plan()["actions"] == []


def test_lost_lock_plans_nothing_and_refresh_detects_a_missing_tag(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    repo = applied_base_and_py(tmp_path, builder_registry, upstream)
    lost_lock_images = repo.lock()["images"]
    assert isinstance(lost_lock_images, dict)
    (repo.root / "imagectl.lock").unlink()
    assert repo.plan()["actions"] == [], "a lost lock must not cause a rebuild storm"
    refreshed = json.loads(repo.ok("plan", "--json", "--refresh"))
    assert refreshed["actions"] == []
    before = {n: r["digest"] for n, r in lost_lock_images.items()}
    out = repo.ok("apply")
    assert "Nothing to do" in out
    restored = repo.lock()["images"]
    assert isinstance(restored, dict)
    assert {n: r["digest"] for n, r in restored.items()} == before
    assert repo.git_log()[0].startswith("imagectl: record 2 images found in the registry")


def test_failed_image_fails_alone(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(tmp_path, builder_registry.host, ref)
    (repo.root / "py" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo compiling && exit 3\n"
    )
    result = repo.run("apply", "--no-git", "--allow-dirty")  # the broken Dockerfile: uncommitted
    assert result.returncode == 1, result.stdout + result.stderr
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert sorted(images) == ["base", "node"]
    assert "skipped" in result.stdout and "failed" in result.stdout
    assert "compiling" in result.stdout + result.stderr  # the build log tail is shown
    # the image is named once and the log path given once (issue 15 item 10)
    assert "py failed: " in result.stdout and "py failed: py:" not in result.stdout
    log_lines = [ln for ln in result.stdout.splitlines() if "full log:" in ln]
    assert len(log_lines) == 1 and log_lines[0].startswith("full log: "), result.stdout
    log_path = log_lines[0].removeprefix("full log: ").strip()
    assert result.stdout.count(log_path) == 1 and Path(log_path).is_file()
    plan = repo.plan()
    assert sorted(a["image"] for a in plan["actions"]) == ["app", "py"]


def test_saved_plan_applies_exactly_and_is_refused_when_stale(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(tmp_path, builder_registry.host, ref, images={"base": "upstream"})
    repo.ok("plan", "--out", "plan.json")
    saved = json.loads((repo.root / "plan.json").read_text())
    seen = saved["base_digests"]["upstream"]
    upstream("vendor build 2")  # the base moves between plan and apply
    repo.ok("apply", "plan.json", "--no-git")
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert images["base"]["base"]["digest"] == seen, "the saved plan's digest was not used"
    stale = repo.run("apply", "plan.json")
    assert stale.returncode == 1 and "stale" in stale.stderr
    # a fresh apply now builds from the new digest
    repo.ok("apply", "--no-git")
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert images["base"]["base"]["digest"] != seen


def test_buildah_builder_reconciles_daemonless(
    tmp_path: Path,
    builder_registry: RegistryServer,
    upstream: UpstreamFactory,
    buildah_root: Path,
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(
        tmp_path,
        builder_registry.host,
        ref,
        builder="buildah",
        images={"base": "upstream", "py": "base"},
    )
    out = repo.ok("apply")
    assert "buildah" in out
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert repo.digest("py", "1.0.0") == images["py"]["digest"]
    assert (
        repo.labels("py", "1.0.0")["org.opencontainers.image.base.digest"]
        == images["base"]["digest"]
    )
    assert repo.plan()["actions"] == []


def test_git_push_and_a_remote_that_moved(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(tmp_path, builder_registry.host, ref, images={"base": "upstream"})
    remote = tmp_path / "remote.git"
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(remote)], cwd=repo.root, check=True)
    subprocess.run(
        ["git", "push", "-q", "-u", "origin", "main"], cwd=repo.root, check=True, env=env
    )
    repo.ok("apply", "--git-push")
    remote_head = subprocess.run(
        ["git", "log", "-1", "--format=%s", "main"], cwd=remote, capture_output=True, text=True
    ).stdout.strip()
    assert remote_head == "imagectl: rebuild 1 image"
    assert repo.labels("base", "1.0.0")["org.opencontainers.image.source"] == str(remote)

    # someone else pushes to the remote: the next apply claims, is refused, fast-forwards
    # to the remote's new state and claims again (never forcing over it)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "README").write_text("hello\n")
    subprocess.run(["git", "add", "README"], cwd=other, check=True)
    subprocess.run(["git", "commit", "-qm", "docs"], cwd=other, check=True, env=env)
    subprocess.run(["git", "push", "-q"], cwd=other, check=True, env=env)
    upstream("vendor build 2")
    result = repo.run("apply", "--git-push")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The remote branch moved: re-planning" in result.stdout
    remote_log = subprocess.run(
        ["git", "log", "--format=%s", "main"], cwd=remote, capture_output=True, text=True
    ).stdout.splitlines()
    assert remote_log[:4] == [
        "imagectl: rebuild 1 image",
        "imagectl: claim 1 image",
        "docs",
        "imagectl: rebuild 1 image",
    ], remote_log

    # a local commit of our own while the remote moved: diverged, refused, never forced
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "local"], cwd=repo.root, env=env)
    (other / "README").write_text("hello again\n")
    subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=other, check=True, env=env)
    subprocess.run(["git", "commit", "-qam", "docs 2"], cwd=other, check=True, env=env)
    subprocess.run(["git", "push", "-q"], cwd=other, check=True, env=env)
    upstream("vendor build 3")
    result = repo.run("apply", "--git-push")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "never merges or forces" in " ".join(result.stderr.split()), result.stderr
    remote_log = subprocess.run(
        ["git", "log", "--format=%s", "main"], cwd=remote, capture_output=True, text=True
    ).stdout
    assert remote_log.splitlines()[0] == "docs 2", "the remote was overwritten"
    assert repo.lock()["images"]["base"]["version"] == "1.0.1"  # type: ignore[index]


def test_status_json_and_github_actions_outputs(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    ref = upstream("vendor build 1")
    repo = make_gitops(
        tmp_path, builder_registry.host, ref, images={"base": "upstream", "py": "base"}
    )
    outputs, summary = tmp_path / "out.txt", tmp_path / "summary.md"
    gha = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = repo.run("plan", env=gha)
    assert result.returncode == 0, result.stderr
    text = outputs.read_text()
    assert "changed<<" in text and "\ntrue\n" in text
    assert '["base", "py"]' in text
    assert '"level":1' in text and '"image":"py"' in text
    assert "| `py` | new |" in summary.read_text()

    repo.ok("apply", "--no-git")
    status = json.loads(repo.ok("status", "--json"))
    rows = {row["image"]: row for row in status["images"]}
    assert rows["py"]["version"] == "1.0.0" and rows["py"]["stale"] is False
    upstream("vendor build 2")
    status = json.loads(repo.ok("status", "--json"))
    rows = {row["image"]: row for row in status["images"]}
    assert rows["base"]["reasons"] == ["base-updated"] and rows["base"]["next_version"] == "1.0.1"
    assert rows["py"]["reasons"] == ["base-rebuilt"]

    (repo.root / "imagectl.yaml").write_text(
        (repo.root / "imagectl.yaml").read_text().replace("context: py", "contxt: py")
    )
    bad = repo.run("validate", env=gha)
    assert bad.returncode == 1
    assert "::error file=imagectl.yaml,line=" in bad.stdout
    assert "did you mean 'context'?" in bad.stdout


def edit_manifest(repo: GitOps, old: str, new: str) -> None:
    """Replace text in the manifest and commit it (what a reviewed change does)."""
    path = repo.root / "imagectl.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))
    commit_all(repo, "edit the manifest")


def commit_all(repo: GitOps, message: str) -> None:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=repo.root, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo.root, check=True, env=env)


def put_variant(repo: GitOps, image: str, source_tag: str, tag: str, indent: int = 1) -> str:
    """Point `tag` at a byte-different copy of `source_tag`'s manifest (a hand-made image).

    Each `indent` gives another digest for the same blobs."""
    raw = registry_get(repo.host, f"{repo.namespace}/{image}/manifests/{source_tag}")
    data = json.loads(raw)
    variant = json.dumps(data, indent=indent).encode()
    response = httpx.put(
        f"http://{repo.host}/v2/{repo.namespace}/{image}/manifests/{tag}",
        content=variant,
        headers={"Content-Type": data["mediaType"]},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.headers["Docker-Content-Digest"])


def test_tag_that_is_an_immutable_tag_of_an_earlier_build_is_never_moved(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    """patch -> revision: `{upstream}` renders 1.0.0, the immutable tag of the patch build."""
    ref = upstream("vendor build 1")
    repo = make_gitops(
        tmp_path, builder_registry.host, ref, images={"base": "upstream", "other": "upstream"}
    )
    repo.ok("apply")
    first = repo.digest("base", "1.0.0")
    edit_manifest(
        repo,
        'context: base\n        version: "1.0"',
        'context: base\n        version: "1.0.0"\n        bump: revision',
    )
    second = upstream("vendor build 2")  # a reason to rebuild both

    plan = repo.run("plan", "--json")
    assert plan.returncode == 1, plan.stdout + plan.stderr
    actions = {a["image"]: a for a in json.loads(plan.stdout)["actions"]}
    assert actions["base"]["to_version"] == "1.0.0-r0"
    blocked = actions["base"]["blocked"]
    assert "tag '1.0.0'" in blocked and "'{upstream}'" in blocked
    assert f"build 1.0.0 ({first})" in blocked and "imagectl.yaml:" in blocked
    assert "blocked" not in actions["other"]
    table = repo.run("plan")
    assert table.returncode == 1 and "1 image cannot be built as planned" in table.stderr
    assert repo.run("plan", "--detailed-exitcode").returncode == 1  # an error, not "changes"

    applied = repo.run("apply")
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "base failed" in applied.stdout and "is the immutable tag of" in applied.stdout
    assert repo.digest("base", "1.0.0") == first, "an immutable tag was moved"
    assert (
        "1.0.0-r0"
        not in json.loads(registry_get(repo.host, f"{repo.namespace}/base/tags/list"))["tags"]
    )
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert images["other"]["version"] == "1.0.1", "the other image did not go on"
    assert images["base"]["version"] == "1.0.0"
    assert images["other"]["base"]["ref"] == second


def test_refresh_puts_back_floating_tags_deleted_or_moved_by_hand(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    repo = applied_base_and_py(tmp_path, builder_registry, upstream)
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    built = images["base"]["digest"]
    py_digest = images["py"]["digest"]
    put_variant(repo, "base", "1.0.0", "1.0")  # moved by hand
    gone = put_variant(repo, "base", "1.0.0", "1", indent=2)  # then deleted by hand
    deleted = httpx.delete(
        f"http://{repo.host}/v2/{repo.namespace}/base/manifests/{gone}", timeout=30
    )
    assert deleted.status_code == 202, deleted.text
    assert repo.plan()["actions"] == [], "without --refresh plan reads no image tags"

    refreshed = json.loads(repo.ok("plan", "--json", "--refresh"))
    assert [
        (a["image"], a["reasons"], a["from_version"], a["to_version"]) for a in refreshed["actions"]
    ] == [("base", ["tag-missing", "tag-moved"], "1.0.0", "1.0.0")], (
        "py must not be rebuilt: its base did not change"
    )
    out = repo.ok("apply", "--refresh")
    assert "adopted" in out
    assert repo.digest("base", "1.0") == built and repo.digest("base", "1") == built
    assert repo.digest("base", "1.0.0") == built and repo.digest("py", "1.0.0") == py_digest
    assert json.loads(repo.ok("plan", "--json", "--refresh"))["actions"] == []
    # the lock already said so: it is unchanged, and nothing is committed
    assert repo.lock()["images"] == images
    assert repo.git_log()[0].startswith("imagectl: rebuild 2 images")


def test_new_registry_makes_images_missing_at_their_new_place(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    repo = applied_base_and_py(tmp_path, builder_registry, upstream)
    moved = f"{repo.namespace}-new"
    edit_manifest(
        repo,
        f"registry: {repo.host}/{repo.namespace}",
        f"registry: {repo.host}/{moved}",
    )
    plan = repo.plan()  # no --refresh
    assert [(a["image"], a["reasons"], a["repository"]) for a in plan["actions"]] == [
        ("base", ["missing"], f"{repo.host}/{moved}/base"),
        ("py", ["base-rebuilt", "missing"], f"{repo.host}/{moved}/py"),
    ]
    repo.ok("apply")
    repo.namespace = moved
    images = repo.lock()["images"]
    assert isinstance(images, dict)
    assert repo.digest("py", "1.0.1") == images["py"]["digest"]
    assert repo.plan()["actions"] == []


def test_clone_behind_the_registry_plans_from_what_the_registry_holds(
    tmp_path: Path, builder_registry: RegistryServer, upstream: UpstreamFactory
) -> None:
    repo = applied_base_and_py(tmp_path, builder_registry, upstream)
    behind_root = tmp_path / "behind"
    subprocess.run(["git", "clone", "-q", str(repo.root), str(behind_root)], check=True)
    behind = GitOps(behind_root, repo.host, repo.namespace)
    upstream("vendor build 2")
    repo.ok("apply")  # 1.0.1 of both, committed where the clone does not see it
    images = repo.lock()["images"]
    assert isinstance(images, dict)

    assert behind.plan()["actions"] == [], "the clone would rebuild what exists"
    out = behind.ok("apply")
    assert "Nothing to do" in out
    recorded = behind.lock()["images"]
    assert isinstance(recorded, dict)
    assert {n: r["digest"] for n, r in recorded.items()} == {
        n: r["digest"] for n, r in images.items()
    }
    upstream("vendor build 3")
    plan = behind.plan()
    assert [(a["image"], a["to_version"]) for a in plan["actions"]] == [
        ("base", "1.0.2"),
        ("py", "1.0.2"),
    ]
