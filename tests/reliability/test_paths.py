"""Path escapes: contexts, Dockerfiles and includes stay inside the git-ops repository.

Each scenario builds a repository next to a directory it must not reach (holding
a Dockerfile and a manifest with a canary string) and points a context, a
Dockerfile or an `include` glob out of the repository: by `..`, by a symlinked
directory or file, or by a glob. `imagectl validate` and `imagectl apply` must exit 1
with the located message, print no traceback and nothing of the outside files,
write nothing and contact no registry. A symlink that stays inside the repository
is accepted (the check resolves symlinks; it does not refuse them blindly).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagectl.inputs import ContextHasher
from tests.reliability.conftest import (
    GIT_ENV,
    Registry,
    Repo,
    UpstreamFactory,
    base_ref,
    registry_get,
)
from tests.reliability.record import result
from tests.reliability.test_bad_input import (
    cli_env,
    counting_server,
    run_cli,
    snapshot,
    snapshot_diff,
)

pytestmark = pytest.mark.reliability

OUTSIDE_CANARY = "outside-canary-8c1f"
DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nUSER 10001\n"
OUTSIDE_DOCKERFILE = f"FROM scratch\nLABEL leaked={OUTSIDE_CANARY}\n"
OUTSIDE_MANIFEST = f"families:\n  {OUTSIDE_CANARY}:\n    images: {{}}\n"


def manifest(host: str, *, context: str = "images/base", extra: str = "", image: str = "") -> str:
    return (
        "version: 1\n"
        f"registry: {host}/acme\n"
        f"{extra}"
        "bases:\n"
        "  debian:\n"
        f"    ref: {host}/upstream/debian:stable\n"
        "families:\n"
        "  runtime:\n"
        "    from: debian\n"
        "    images:\n"
        "      base:\n"
        f"        context: {context}\n"
        '        version: "1.4"\n'
        f"{image}"
    )


@dataclass(frozen=True)
class Scenario:
    injected: str
    build: Callable[[Path, Path, str], None]  # (work dir, repo, registry host)
    expected: str  # the located message stderr must hold


def _outside(work: Path) -> Path:
    """work/outside: a context directory and a manifest the repository must not reach."""
    outside = work / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "Dockerfile").write_text(OUTSIDE_DOCKERFILE)
    (outside / "evil.yaml").write_text(OUTSIDE_MANIFEST)
    (work / "evil.yaml").write_text(OUTSIDE_MANIFEST)
    return outside


def _base_context(repo: Path) -> None:
    (repo / "images" / "base").mkdir(parents=True)
    (repo / "images" / "base" / "Dockerfile").write_text(DOCKERFILE)


def context_symlink(work: Path, repo: Path, host: str) -> None:
    outside = _outside(work)
    (repo / "images").mkdir(parents=True)
    (repo / "images" / "base").symlink_to(outside, target_is_directory=True)
    (repo / "imagectl.yaml").write_text(manifest(host))


def context_parent_symlink(work: Path, repo: Path, host: str) -> None:
    outside = _outside(work)
    (outside / "base").mkdir()
    (outside / "base" / "Dockerfile").write_text(OUTSIDE_DOCKERFILE)
    repo.mkdir(parents=True)
    (repo / "images").symlink_to(outside, target_is_directory=True)
    (repo / "imagectl.yaml").write_text(manifest(host))


def context_dotdot(work: Path, repo: Path, host: str) -> None:
    _outside(work)
    repo.mkdir(parents=True)
    (repo / "imagectl.yaml").write_text(manifest(host, context="../outside"))


def dockerfile_symlink(work: Path, repo: Path, host: str) -> None:
    outside = _outside(work)
    (repo / "images" / "base").mkdir(parents=True)
    (repo / "images" / "base" / "Dockerfile").symlink_to(outside / "Dockerfile")
    (repo / "imagectl.yaml").write_text(manifest(host))


def dockerfile_dotdot(work: Path, repo: Path, host: str) -> None:
    _outside(work)
    _base_context(repo)
    (repo / "imagectl.yaml").write_text(
        manifest(host, image="        dockerfile: ../../../outside/Dockerfile\n")
    )


def include_parent_glob(work: Path, repo: Path, host: str) -> None:
    _outside(work)
    _base_context(repo)
    (repo / "imagectl.yaml").write_text(manifest(host, extra='include: ["../*.yaml"]\n'))


def include_symlinked_file(work: Path, repo: Path, host: str) -> None:
    outside = _outside(work)
    _base_context(repo)
    (repo / "families").mkdir()
    (repo / "families" / "evil.yaml").symlink_to(outside / "evil.yaml")
    (repo / "imagectl.yaml").write_text(manifest(host, extra='include: ["families/*.yaml"]\n'))


def include_symlinked_dir(work: Path, repo: Path, host: str) -> None:
    outside = _outside(work)
    _base_context(repo)
    (repo / "families").symlink_to(outside, target_is_directory=True)
    (repo / "imagectl.yaml").write_text(manifest(host, extra='include: ["families/*.yaml"]\n'))


def symlink_inside(work: Path, repo: Path, host: str) -> None:
    (repo / "shared" / "base").mkdir(parents=True)
    (repo / "shared" / "base" / "Dockerfile").write_text(DOCKERFILE)
    (repo / "images").mkdir()
    (repo / "images" / "base").symlink_to(Path("..") / "shared" / "base")
    (repo / "imagectl.yaml").write_text(manifest(host))


CONTEXT = "imagectl.yaml:11:18: families.runtime.images.base.context:"
INCLUDE = "imagectl.yaml:3:11: include[0]:"
ESCAPES = {
    "context dir symlinked outside": Scenario(
        "images/base -> ../outside (a directory outside the repository)",
        context_symlink,
        f"{CONTEXT} context 'images/base' resolves through a symlink to",
    ),
    "context parent dir symlinked outside": Scenario(
        "images -> ../outside; context: images/base",
        context_parent_symlink,
        f"{CONTEXT} context 'images/base' resolves through a symlink to",
    ),
    "context ..": Scenario(
        "context: ../outside",
        context_dotdot,
        f"{CONTEXT} context '../outside' is outside the repository",
    ),
    "Dockerfile symlinked outside": Scenario(
        "images/base/Dockerfile -> ../outside/Dockerfile",
        dockerfile_symlink,
        f"{CONTEXT} Dockerfile 'images/base/Dockerfile' resolves through a symlink to",
    ),
    "dockerfile ..": Scenario(
        "dockerfile: ../../../outside/Dockerfile",
        dockerfile_dotdot,
        "imagectl.yaml:13:21: families.runtime.images.base.dockerfile: Dockerfile "
        "'../../../outside/Dockerfile' is outside the repository",
    ),
    "include ../*.yaml": Scenario(
        'include: ["../*.yaml"] (../evil.yaml exists)',
        include_parent_glob,
        f"{INCLUDE} '../*.yaml' matches '../evil.yaml', which is outside the repository",
    ),
    "include of a symlinked file": Scenario(
        'families/evil.yaml -> ../outside/evil.yaml; include: ["families/*.yaml"]',
        include_symlinked_file,
        f"{INCLUDE} 'families/*.yaml' matches 'families/evil.yaml', which resolves through a "
        "symlink to",
    ),
    "include through a symlinked dir": Scenario(
        'families -> ../outside; include: ["families/*.yaml"]',
        include_symlinked_dir,
        f"{INCLUDE} 'families/*.yaml' matches 'families/evil.yaml', which resolves through a "
        "symlink to",
    ),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_path_escape_is_refused(name: str, tmp_path: Path) -> None:
    scenario = ESCAPES[name]
    server = counting_server()
    try:
        with result("security", f"path escape: {name}", scenario.injected) as rec:
            rec.count = 1
            outcomes = []
            for command in ("validate", "apply"):
                work = tmp_path / command
                repo = work / "repo"
                scenario.build(work, repo, server.host)
                before = snapshot(work)
                run = run_cli(repo, command, env=cli_env(tmp_path))
                outcomes.append((command, run, snapshot_diff(before, snapshot(work))))
            for command, run, changes in outcomes:
                output = run.stdout + run.stderr
                assert run.returncode == 1, f"{command}: {output}"
                assert scenario.expected in run.stderr, f"{command}: {run.stderr}"
                assert "Traceback" not in output, output
                assert OUTSIDE_CANARY not in output, f"{command} printed an outside file"
                assert changes == [], f"{command}: {changes}"
            assert server.connections == 0, server.requests
            rec.observed = f"validate/apply exit 1: {scenario.expected.split(': ', 1)[1]}…"
    finally:
        server.close()


def test_symlink_inside_the_repository_is_accepted(tmp_path: Path) -> None:
    server = counting_server()
    try:
        repo = tmp_path / "repo"
        symlink_inside(tmp_path, repo, server.host)
        run = run_cli(repo, "validate", env=cli_env(tmp_path))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "1 image" in run.stdout
    finally:
        server.close()


# ------------------------------------------------------- only declared inputs enter an image

STATE_NAMES = (".imagectl", "imagectl.lock", ".git")
COPY_ALL = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /ctx/\nUSER 10001\n"


def _context_repo(root: Path, host: str, base: str, builder: str) -> Repo:
    """A repo whose one image has `context: .`: its own state lies in the context."""
    namespace = f"inputs-{uuid.uuid4().hex[:10]}"
    files = {
        "Dockerfile": COPY_ALL,
        "app.txt": "v1\n",
        "sub/deep.txt": "deep\n",
        "sub/.imagectl/nested-state.txt": "another manifest's state\n",
        "docker-ignored.txt": "buildah sends this one\n",
        "buildah-ignored.txt": "docker sends this one\n",
        ".dockerignore": "docker-ignored.txt\n",
        ".containerignore": "buildah-ignored.txt\n",
        "imagectl.yaml": (
            f"version: 1\nregistry: {host}/{namespace}\n"
            f"defaults: {{builder: {builder}, network: host}}\n"
            f"bases: {{upstream: {{ref: '{base}'}}}}\n"
            "families:\n  all:\n    from: upstream\n    images:\n"
            '      app: {context: ., version: "1.0"}\n'
        ),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    os.symlink("app.txt", root / "link.txt")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"]):
        subprocess.run(argv, cwd=root, check=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    return Repo(root, Registry(host), namespace)


def _image_files(registry: Registry, repository: str, tag: str, under: str) -> set[str]:
    """Paths of files and symlinks below `under/` in the image's layers, as published."""
    manifest = registry_get(registry.host, f"{repository}/manifests/{tag}")
    manifest.raise_for_status()
    found: set[str] = set()
    for layer in manifest.json()["layers"]:
        blob = registry_get(registry.host, f"{repository}/blobs/{layer['digest']}")
        blob.raise_for_status()
        with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name.startswith(under + "/") and not member.isdir():
                    found.add(name.removeprefix(under + "/"))
    return found


@pytest.mark.parametrize("builder", ["docker", "buildah"])
def test_only_declared_inputs_enter_the_image(
    builder: str,
    tmp_path: Path,
    registry: Registry,
    buildah_root: Path,
    upstream: UpstreamFactory,
) -> None:
    injected = (
        f"context: . built with {builder} after plan and apply left .imagectl/ (logs, "
        "apply.lck, manifest cache) and imagectl.lock in it; .git, .dockerignore and "
        ".containerignore excluding different files"
    )
    with result("security", f"only declared inputs enter the image ({builder})", injected) as rec:
        upstream(f"inputs-{builder}")
        repo = _context_repo(
            tmp_path / "repo", registry.host, base_ref(registry.host, upstream), builder
        )
        repo.ok("plan")
        repo.ok("apply")
        assert (repo.root / "imagectl.lock").exists()
        (repo.root / "app.txt").write_text("v2\n")
        repo.commit_all("app v2")
        repo.ok("apply")  # this build runs with every kind of state in the context
        newest = repo.versions("app")[-1]
        sent = _image_files(registry, repo.repository("app"), newest, "ctx")
        hashed = ContextHasher(repo.root).context_files(Path("."), Path("Dockerfile"), builder)
        rec.count = len(sent)
        assert sent == {entry.rel for entry in hashed}
        leaked = sorted(p for p in sent if any(n in p.split("/") for n in STATE_NAMES))
        assert leaked == []
        own, other = ("docker", "buildah") if builder == "docker" else ("buildah", "docker")
        assert f"{own}-ignored.txt" not in sent and f"{other}-ignored.txt" in sent
        assert {"link.txt", "run.sh", "sub/deep.txt", ".dockerignore"} <= sent

        # a file this builder sends is an input; one it ignores is not
        (repo.root / f"{other}-ignored.txt").write_text("changed\n")
        repo.commit_all("a file the builder sends")
        assert repo.planned() == ["app"]
        repo.ok("apply")
        (repo.root / f"{own}-ignored.txt").write_text("changed\n")
        repo.commit_all("a file the builder ignores")
        assert repo.planned() == []
        rec.observed = (
            f"the image's /ctx holds exactly the {len(sent)} files of the inputs digest; no "
            f".imagectl, imagectl.lock or .git; {own}-ignored.txt left out and not an input"
        )
