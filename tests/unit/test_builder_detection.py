from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from imagectl.builders import BUILDERS, BuildRequest, SecretSpec, get_builder
from imagectl.builders import buildah as buildah_mod
from imagectl.builders import docker as docker_mod
from imagectl.builders.base import Output, check_request, is_loopback_registry, secret_files
from imagectl.builders.docker import (
    DockerChoice,
    DockerMode,
    DockerProbe,
    choose_docker,
    detect_mode,
    parse_push_digest,
)
from imagectl.builders.iid import ImageIds
from imagectl.errors import BuildError

# What the clients on the reference machine report (docker 20.10 from Debian, and a
# docker 28 client installed without the buildx plugin), against a 20.10 daemon.
SERVER = {"server_version": "20.10.24+dfsg1", "server_api": "1.41", "server_os": "linux"}
DEBIAN_20 = DockerProbe("/usr/bin/docker", "20.10.24+dfsg1", "1.41", buildkit_env=True, **SERVER)
NEW_NO_BUILDX = DockerProbe("/usr/local/bin/docker", "28.2.2", "1.41", buildkit_env=False, **SERVER)
NEW_BUILDX = DockerProbe(
    "/usr/local/bin/docker",
    "28.2.2",
    "1.41",
    buildx_version="v0.24.0",
    buildx_driver="docker",
    buildkit_env=True,
    **SERVER,
)


def test_buildx_wins() -> None:
    assert detect_mode(NEW_BUILDX) is DockerMode.BUILDX


def test_builtin_buildkit_on_docker_20() -> None:
    assert detect_mode(DEBIAN_20) is DockerMode.BUILDKIT


def test_new_client_without_buildx_is_classic() -> None:
    assert detect_mode(NEW_NO_BUILDX) is DockerMode.CLASSIC


def test_old_api_is_classic() -> None:
    old = DockerProbe("docker", "18.06.1", "1.38", buildkit_env=True, server_api="1.38")
    assert detect_mode(old) is DockerMode.CLASSIC
    windows = DockerProbe("docker", "20.10.0", "1.41", buildkit_env=True, server_os="windows")
    assert detect_mode(windows) is DockerMode.CLASSIC


def test_path_client_without_buildx_gives_way_to_system_docker() -> None:
    choice = choose_docker([NEW_NO_BUILDX, DEBIAN_20])
    assert choice.probe is DEBIAN_20
    assert choice.mode is DockerMode.BUILDKIT
    assert "/usr/bin/docker" in choice.description
    assert "chosen over /usr/local/bin/docker" in choice.description
    assert "BuildKit" in choice.description


def test_path_client_with_buildx_is_kept() -> None:
    choice = choose_docker([NEW_BUILDX, DEBIAN_20])
    assert choice.probe is NEW_BUILDX
    assert choice.description.startswith("docker 28.2.2 (buildx v0.24.0)")
    assert "chosen over" not in choice.description


def test_explicit_client_is_never_replaced() -> None:
    choice = choose_docker([NEW_NO_BUILDX, DEBIAN_20], explicit=True)
    assert choice.probe is NEW_NO_BUILDX
    assert choice.mode is DockerMode.CLASSIC
    assert "IMAGECTL_DOCKER" in choice.description


def test_no_client_names_what_to_install() -> None:
    with pytest.raises(BuildError, match=r"apt-get install docker\.io"):
        choose_docker([])


def test_unreachable_daemon_is_a_clear_error() -> None:
    down = DockerProbe("/usr/bin/docker", "20.10.24", "1.41", buildkit_env=True, daemon_error="x")
    with pytest.raises(BuildError, match="start dockerd"):
        choose_docker([down])


def test_secret_env_needs_buildkit_0_8() -> None:
    assert DockerChoice(NEW_BUILDX, DockerMode.BUILDX).secret_env
    assert DockerChoice(DEBIAN_20, DockerMode.BUILDKIT).secret_env
    old = DockerProbe("docker", "19.03.15", "1.40", buildkit_env=True, **SERVER)
    assert not DockerChoice(old, DockerMode.BUILDKIT).secret_env


def test_multi_platform_needs_a_buildx_driver_other_than_docker() -> None:
    assert not DockerChoice(NEW_BUILDX, DockerMode.BUILDX).multi_platform
    container = DockerProbe(
        "d", "28.2.2", "1.41", buildx_version="v0.24.0", buildx_driver="docker-container"
    )
    assert DockerChoice(container, DockerMode.BUILDX).multi_platform
    assert not DockerChoice(DEBIAN_20, DockerMode.BUILDKIT).multi_platform


def test_candidates_prefer_path_then_system_docker(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    candidates, explicit = docker_mod.docker_candidates({"PATH": str(tmp_path)})
    assert candidates[0] == str(fake)
    assert not explicit
    if os.access(docker_mod.SYSTEM_DOCKER, os.X_OK):
        assert candidates[1:] == [docker_mod.SYSTEM_DOCKER]
    assert docker_mod.docker_candidates({"PATH": str(tmp_path / "none")}) == ([], False)
    named = docker_mod.docker_candidates({"PATH": "", "IMAGECTL_DOCKER": str(fake)})
    assert named == ([str(fake)], True)
    with pytest.raises(BuildError, match="IMAGECTL_DOCKER"):
        docker_mod.docker_candidates({"IMAGECTL_DOCKER": str(tmp_path / "missing")})


def test_parse_push_digest() -> None:
    out = "abc: Pushed\n1.0.0: digest: sha256:" + "a" * 64 + " size: 942\n"
    assert parse_push_digest(out) == "sha256:" + "a" * 64
    assert parse_push_digest("nothing") is None


def _request(tmp_path: Path, **overrides: object) -> BuildRequest:
    fields: dict[str, object] = {
        "name": "app",
        "context": tmp_path,
        "dockerfile": Path("Dockerfile"),
        "ref": "127.0.0.1:5000/acme/app:1.0.0",
        "log_path": tmp_path / "build.log",
        "build_args": {"BASE_IMAGE": "127.0.0.1:5000/up/bb@sha256:" + "b" * 64},
        "labels": {"org.opencontainers.image.version": "1.0.0"},
        "annotations": {"org.opencontainers.image.base.name": "127.0.0.1:5000/up/bb:1"},
        "network": "host",
        "secrets": [SecretSpec("tok", env="TOK")],
        "env": {"TOK": "value-never-in-argv"},
    }
    fields.update(overrides)
    return BuildRequest(**fields)  # type: ignore[arg-type]


def test_docker_argv_buildkit(tmp_path: Path) -> None:
    req = _request(tmp_path)
    argv = docker_mod.build_argv(DockerChoice(DEBIAN_20, DockerMode.BUILDKIT), req, secret_srcs={})
    assert argv[:4] == ["/usr/bin/docker", "build", "--progress", "plain"]
    assert argv[argv.index("--network") : argv.index("--network") + 2] == ["--network", "host"]
    assert "--secret" in argv and "id=tok,env=TOK" in argv
    assert "BASE_IMAGE=127.0.0.1:5000/up/bb@sha256:" + "b" * 64 in argv
    assert "--annotation" not in argv  # the docker image store keeps no annotations
    assert argv[-1] == str(tmp_path)
    assert str(tmp_path / "Dockerfile") in argv
    assert "value-never-in-argv" not in " ".join(argv)


def test_docker_argv_secret_file_fallback_and_buildx_load(tmp_path: Path) -> None:
    req = _request(tmp_path, network="none", target="runtime", platforms=["linux/amd64"])
    srcs = {"tok": tmp_path / "tok"}
    argv = docker_mod.build_argv(DockerChoice(NEW_BUILDX, DockerMode.BUILDX), req, secret_srcs=srcs)
    assert argv[1:4] == ["buildx", "build", "--progress"]
    assert "--load" in argv
    assert f"id=tok,src={tmp_path / 'tok'}" in argv
    assert argv[argv.index("--target") + 1] == "runtime"
    assert argv[argv.index("--platform") + 1] == "linux/amd64"


NO_BRIDGE = dataclasses.replace(DEBIAN_20, default_bridge=False)


def _network(argv: list[str]) -> str | None:
    return argv[argv.index("--network") + 1] if "--network" in argv else None


@pytest.mark.parametrize(
    ("requested", "with_bridge", "without_bridge"),
    [
        (None, None, "host"),
        ("default", None, "host"),
        ("host", "host", "host"),
        ("none", "none", "none"),
    ],
)
def test_daemon_without_bridge_builds_on_the_host_network(
    tmp_path: Path, requested: str | None, with_bridge: str | None, without_bridge: str
) -> None:
    req = _request(tmp_path, network=requested)
    bridged = DockerChoice(DEBIAN_20, DockerMode.BUILDKIT)
    bridgeless = DockerChoice(NO_BRIDGE, DockerMode.BUILDKIT)
    assert _network(docker_mod.build_argv(bridged, req, secret_srcs={})) == with_bridge
    assert _network(docker_mod.build_argv(bridgeless, req, secret_srcs={})) == without_bridge
    assert "no default bridge" not in bridged.description
    assert "no default bridge network" in bridgeless.description  # said once, by check()
    assert "use the host network" in bridgeless.description


def test_buildx_container_driver_does_not_need_the_daemon_bridge(tmp_path: Path) -> None:
    container = dataclasses.replace(
        NEW_BUILDX, buildx_driver="docker-container", default_bridge=False
    )
    choice = DockerChoice(container, DockerMode.BUILDX)
    assert (
        _network(docker_mod.build_argv(choice, _request(tmp_path, network=None), secret_srcs={}))
        is None
    )
    assert choice.bridge_note == ""
    in_daemon = DockerChoice(
        dataclasses.replace(NEW_BUILDX, default_bridge=False), DockerMode.BUILDX
    )
    assert in_daemon.needs_host_network


def test_secret_files_are_private_and_removed(tmp_path: Path) -> None:
    req = _request(tmp_path)
    with secret_files(req) as paths:
        path = paths["tok"]
        assert path.read_text() == "value-never-in-argv"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists()


def test_check_request_rejects_missing_secret_env_and_bad_network(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"\$TOK, which is not set"):
        check_request(_request(tmp_path, env={}))
    with pytest.raises(BuildError, match="network 'bridge'"):
        check_request(_request(tmp_path, network="bridge"))


def test_loopback_registries() -> None:
    assert is_loopback_registry("127.0.0.1:5000/a/b:1")
    assert is_loopback_registry("localhost:5000/a@sha256:" + "0" * 64)
    assert is_loopback_registry("[::1]:5000/a:1")
    assert not is_loopback_registry("docker.io/library/debian:bookworm")
    assert not is_loopback_registry("debian:bookworm")
    assert not is_loopback_registry("127.0.0.1.example.com/a:1")


SETUP = buildah_mod.BuildahSetup("1.28.2", ("--root", "/r/storage"), "vfs", "chroot")


def test_buildah_argv(tmp_path: Path) -> None:
    req = _request(tmp_path)
    argv = buildah_mod.build_argv(SETUP, req, isolation="chroot", secret_srcs={})
    assert argv[:5] == ["buildah", "--root", "/r/storage", "bud", "--format"]
    assert "--layers" in argv
    assert "--tls-verify=false" in argv
    assert "org.opencontainers.image.base.name=127.0.0.1:5000/up/bb:1" in argv
    assert "id=tok,env=TOK" in argv
    assert argv[argv.index("--tag") + 1] == req.ref
    multi = _request(tmp_path, platforms=["linux/amd64", "linux/arm64"])
    argv = buildah_mod.build_argv(SETUP, multi, isolation="chroot", secret_srcs={})
    assert argv[argv.index("--manifest") + 1] == req.ref
    assert "--layers" not in argv  # its cache mixes up platforms
    push = buildah_mod.push_argv(SETUP, multi, tmp_path / "d")
    assert push[3:6] == ["manifest", "push", "--all"]
    assert push[-2:] == [req.ref, f"docker://{req.ref}"]


def test_buildah_tls_stays_on_for_remote_registries(tmp_path: Path) -> None:
    req = _request(
        tmp_path,
        ref="registry.example.com/a:1",
        build_args={"BASE_IMAGE": "debian@sha256:" + "c" * 64},
    )
    assert "--tls-verify=false" not in buildah_mod.build_argv(
        SETUP, req, isolation="chroot", secret_srcs={}
    )


def test_buildah_network_none_leaves_chroot_isolation() -> None:
    assert buildah_mod.isolation_for(SETUP, "none", explicit=False) == "oci"
    assert buildah_mod.isolation_for(SETUP, "host", explicit=False) == "chroot"
    with pytest.raises(BuildError, match="host network"):
        buildah_mod.isolation_for(SETUP, "none", explicit=True)


def test_registry_of_builders() -> None:
    assert set(BUILDERS) == {"docker", "buildah"}
    assert get_builder("buildah").name == "buildah"
    with pytest.raises(BuildError, match="known: buildah, docker"):
        get_builder("kaniko")


def test_platforms_make_one_output_decision(tmp_path: Path) -> None:
    assert _request(tmp_path, platforms=[]).output is Output.IMAGE
    assert _request(tmp_path, platforms=["linux/arm64"]).output is Output.IMAGE
    multi = _request(tmp_path, platforms=["linux/amd64", "linux/arm64"])
    assert multi.output is Output.INDEX
    assert buildah_mod.buildah_output(multi).fresh_list
    assert not buildah_mod.buildah_output(_request(tmp_path)).fresh_list
    container = dataclasses.replace(NEW_BUILDX, buildx_driver="docker-container")
    argv = docker_mod.build_argv(DockerChoice(container, DockerMode.BUILDX), multi, secret_srcs={})
    assert "--load" not in argv and "--tag" not in argv
    assert argv[argv.index("--output") + 1].startswith(f"type=image,name={multi.ref},push=false")


def test_single_image_builds_write_their_image_id_and_indexes_do_not(tmp_path: Path) -> None:
    """apply's read after the push compares the image id with the config under the tag."""
    iid = tmp_path / "iid"
    one, multi = _request(tmp_path), _request(tmp_path, platforms=["linux/amd64", "linux/arm64"])
    argv = buildah_mod.build_argv(SETUP, one, isolation="chroot", secret_srcs={}, iidfile=iid)
    assert argv[argv.index("--iidfile") + 1] == str(iid)
    argv = buildah_mod.build_argv(SETUP, multi, isolation="chroot", secret_srcs={}, iidfile=iid)
    assert "--iidfile" not in argv  # buildah refuses one id file for several images
    choice = DockerChoice(DEBIAN_20, DockerMode.BUILDKIT)
    argv = docker_mod.build_argv(choice, one, secret_srcs={}, iidfile=iid)
    assert argv[argv.index("--iidfile") + 1] == str(iid)


def test_image_ids_keep_what_the_build_wrote(tmp_path: Path) -> None:
    ids = ImageIds()
    with ids.capture("r/a:1") as path:
        path.write_text("sha256:" + "a" * 64 + "\n")
    with ids.capture("r/b:1") as path:
        path.write_text("b" * 64)  # without the algorithm, as some builders write it
    with ids.capture("r/c:1"):
        pass  # nothing written: unknown
    assert ids.get("r/a:1") == "sha256:" + "a" * 64
    assert ids.get("r/b:1") == "sha256:" + "b" * 64
    assert ids.get("r/c:1") is None
