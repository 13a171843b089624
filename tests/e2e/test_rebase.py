"""Rebase end to end: a base update republishes COPY-only images without any builder.

Proof: the rebased image's exported file tree equals a real build of the same inputs
on the new base, `docker run` of it works, and no builder ran (the apply runs with
IMAGECTL_DOCKER naming no executable, so any build would fail).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv.registry import RegistryServer
from tests.e2e.family import make_family, upstream_publisher
from tests.e2e.test_reconcile import GitOps
from tests.fixtures.builders import registry_get
from tests.reliability.record import result

pytestmark = pytest.mark.e2e

DOCKERFILES = {
    "base": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY base.txt /etc/acme/base.txt\n",
    "app": (
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENV GREETING=hello\n"
        'COPY app.txt /srv/app.txt\nCMD ["cat", "/srv/app.txt", "/etc/upstream-marker"]\n'
    ),
    "runner": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo ran > /ran\n",
}


def make_repo(tmp_path: Path, host: str, upstream_ref: str, update: str, dirname: str) -> GitOps:
    images = {"base": "upstream", "app": "base", "runner": "base"}
    family = {name: (base, DOCKERFILES[name]) for name, base in images.items()}
    defaults = {"builder": "docker", "network": "host", "update": update}
    return make_family(tmp_path / dirname, host, upstream_ref, family, defaults)


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def file_tree(ref: str) -> dict[str, str]:
    """Path -> kind, mode, owner and content hash (or link target) of the image's files."""
    docker("pull", "-q", ref)
    container = docker("create", ref).strip()
    try:
        exported = subprocess.run(
            ["docker", "export", container], capture_output=True, timeout=300, check=True
        ).stdout
    finally:
        docker("rm", container)
    tree: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar:
            if member.name in (".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf"):
                continue
            what = f"{member.type!r} {member.mode:o} {member.uid}:{member.gid}"
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                what += " " + hashlib.sha256(handle.read()).hexdigest()
            elif member.issym() or member.islnk():
                what += " -> " + member.linkname
            tree[member.name] = what
    return tree


@pytest.fixture
def upstream(builder_registry: RegistryServer, dockerd: str) -> Callable[[str], tuple[str, str]]:
    """A fresh upstream base built with docker: marker -> (reference by tag, digest)."""
    return upstream_publisher(builder_registry.host, "rebase")


def test_base_update_rebases_copy_only_images_without_a_builder(
    tmp_path: Path, builder_registry: RegistryServer, upstream: Callable[[str], tuple[str, str]]
) -> None:
    ref, _ = upstream("vendor 1")
    repo = make_repo(tmp_path, builder_registry.host, ref, "auto", "rebased")
    first = repo.plan()["actions"]
    assert {a["image"]: a["method"] for a in first} == {  # type: ignore[index]
        "base": "build",
        "app": "build",
        "runner": "build",
    }
    repo.ok("apply")
    old = repo.lock()["images"]
    assert isinstance(old, dict)

    upstream("vendor 2")
    actions = {a["image"]: a for a in repo.plan()["actions"]}  # type: ignore[index]
    assert actions["base"]["method"] == "rebase"
    assert actions["app"]["method"] == "rebase"
    assert actions["runner"]["method"] == "build"
    assert "RUN" in actions["runner"]["why"]

    # only the runner builds: its own apply; the rest must not need any builder
    repo.ok("apply", "--only", "runner")
    no_builder = repo.run("apply", env={"IMAGECTL_DOCKER": str(tmp_path / "no-docker")})
    assert no_builder.returncode == 0, no_builder.stdout + no_builder.stderr
    lock = repo.lock()["images"]
    assert isinstance(lock, dict)
    for name in ("base", "app"):
        assert lock[name]["version"] == "1.0.1"
        assert lock[name]["digest"] == repo.digest(name, "1.0.1") == repo.digest(name, "1.0")
    labels = repo.labels("app", "1.0.1")
    assert labels["org.opencontainers.image.version"] == "1.0.1"
    assert labels["org.opencontainers.image.base.digest"] == lock["base"]["digest"]
    assert labels["dev.imagectl.inputs"] == old["app"]["inputs"]
    assert repo.plan()["actions"] == []

    # the rebased image's own layer is the old one, blob-mounted, not rebuilt
    def layers(name: str, tag: str) -> list[str]:
        manifest = json.loads(registry_get(repo.host, f"{repo.namespace}/{name}/manifests/{tag}"))
        return [layer["digest"] for layer in manifest["layers"]]

    assert layers("app", "1.0.1")[-1] == layers("app", "1.0.0")[-1]
    assert layers("app", "1.0.1")[:-1] == layers("base", "1.0.1")

    # a real build of the same inputs on the new base gives the same file tree
    built = make_repo(tmp_path, builder_registry.host, ref, "build", "built")
    built.ok("apply")
    rebased_ref = f"{repo.host}/{repo.namespace}/app:1.0.1"
    built_ref = f"{built.host}/{built.namespace}/app:1.0.0"
    assert file_tree(rebased_ref) == file_tree(built_ref)
    out = docker("run", "--rm", "--network", "none", rebased_ref)
    assert out == "app v1\nvendor 2\n"
    assert (
        docker("run", "--rm", "--network", "none", rebased_ref, "sh", "-c", "echo $GREETING")
        == "hello\n"
    )


def test_update_rebase_refuses_an_unsafe_dockerfile_at_plan_time(
    tmp_path: Path, builder_registry: RegistryServer, upstream: Callable[[str], tuple[str, str]]
) -> None:
    ref, _ = upstream("vendor 1")
    repo = make_repo(tmp_path, builder_registry.host, ref, "rebase", "strict")
    repo.ok("apply")
    upstream("vendor 2")
    result = repo.run("plan")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "image 'runner'" in out and "line 3: RUN" in out


@pytest.mark.parametrize("point", ["app:pushed", "app:tagged:1.0"])
def test_kill_during_a_rebase_then_rerun_converges(
    tmp_path: Path,
    builder_registry: RegistryServer,
    upstream: Callable[[str], tuple[str, str]],
    point: str,
) -> None:
    injected = f"IMAGECTL_FAULT_KILL_AT={point}"
    with result("kills", f"rebase apply, SIGKILL at {point}", injected) as rec:
        ref, _ = upstream("vendor 1")
        repo = make_repo(tmp_path, builder_registry.host, ref, "auto", "killed")
        repo.ok("apply")
        upstream("vendor 2")
        no_builder = {"IMAGECTL_DOCKER": str(tmp_path / "no-docker")}
        killed = repo.run(
            "apply", "--only", "app", env={**no_builder, "IMAGECTL_FAULT_KILL_AT": point}
        )
        assert killed.returncode != 0
        pushed = repo.digest("app", "1.0.1")  # the immutable tag was PUT before the kill
        again = repo.run("apply", "--only", "app", env=no_builder)
        assert again.returncode == 0, again.stdout + again.stderr
        lock = repo.lock()["images"]
        assert isinstance(lock, dict)
        assert lock["app"]["digest"] == pushed == repo.digest("app", "1.0")
        actions = repo.plan()["actions"]
        assert [a["image"] for a in actions] == ["runner"]  # type: ignore[index]
        rec.observed = "re-run adopted the rebased tag, moved the floating tag, recorded it"
        rec.count = 1
