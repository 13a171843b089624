"""Real builds with docker and buildah against a real registry on loopback.

Each build starts from the upstream busybox base pinned by digest, runs a RUN step
that needs a build secret, and is pushed; the registry must serve exactly the
digest the builder reported, with our labels, and the secret must be nowhere.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv.registry import RegistryServer
from imagectl.builders import BuildRequest, SecretSpec, get_builder
from imagectl.builders.buildah import BuildahBuilder
from imagectl.builders.docker import DockerBuilder, DockerMode
from imagectl.errors import BuildError
from imagectl.proc import run
from tests.fixtures.builders import UpstreamBase, manifest_digest, registry_get
from tests.fixtures.procs import sleep_marker, wait_gone, with_arg

pytestmark = pytest.mark.e2e

CANARY = "imagectl-canary-" + secrets.token_hex(12)
FILE_CANARY = "imagectl-file-canary-" + secrets.token_hex(12)

# The RUN step proves both secrets are readable (by their hashes, so the Dockerfile
# and the history never hold the values), prints one (the log must show it redacted)
# and records the build arg and the upstream marker it saw. GREETING is unique per
# build so that no RUN step is ever served from the cache.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
ARG GREETING=unset
RUN --mount=type=secret,id=tok --mount=type=secret,id=file \\
    test "$(sha256sum < /run/secrets/tok | cut -c1-64)" = "{tok}" && \\
    test "$(sha256sum < /run/secrets/file | cut -c1-64)" = "{file}" && \\
    echo "token is $(cat /run/secrets/tok)" && \\
    echo "$GREETING" > /greeting && cp /etc/upstream-marker /seen-marker
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _context(tmp_path: Path, dockerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    return context


def _request(
    tmp_path: Path, registry: RegistryServer, base: UpstreamBase, repo: str, network: str
) -> BuildRequest:
    secret_file = tmp_path / "file-secret"
    secret_file.write_text(FILE_CANARY)
    context = _context(tmp_path, DOCKERFILE.format(tok=_sha(CANARY), file=_sha(FILE_CANARY)))
    return BuildRequest(
        name=repo.rsplit("/", 1)[-1],
        context=context,
        dockerfile=Path("Dockerfile"),
        ref=f"{registry.host}/{repo}:1.0.0",
        log_path=tmp_path / "build.log",
        build_args={"BASE_IMAGE": base.pinned, "GREETING": f"hello-{secrets.token_hex(6)}"},
        labels={
            "org.opencontainers.image.version": "1.0.0",
            "org.opencontainers.image.base.name": base.tagged,
            "org.opencontainers.image.base.digest": base.digest,
            "dev.imagectl.family": "e2e",
        },
        annotations={
            "org.opencontainers.image.base.name": base.tagged,
            "org.opencontainers.image.base.digest": base.digest,
        },
        network=network,
        secrets=[SecretSpec("tok", env="IMAGECTL_E2E_TOKEN"), SecretSpec("file", file=secret_file)],
        env={"IMAGECTL_E2E_TOKEN": CANARY},
    )


def _pushed_files(host: str, repo: str, manifest: dict[str, object]) -> dict[str, bytes]:
    """Every regular file of every pushed layer, by path (later layers win)."""
    files: dict[str, bytes] = {}
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for layer in layers:
        blob = registry_get(host, f"{repo}/blobs/{layer['digest']}")
        data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
        assert CANARY.encode() not in data and FILE_CANARY.encode() not in data
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[member.name.lstrip("./")] = extracted.read()
    return files


def _assert_pushed(req: BuildRequest, digest: str, base: UpstreamBase) -> dict[str, object]:
    host, _, rest = req.ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    assert digest.startswith("sha256:")
    assert manifest_digest(host, repo, tag) == digest
    raw = registry_get(host, f"{repo}/manifests/{tag}")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    config_raw = registry_get(host, f"{repo}/blobs/{manifest['config']['digest']}")
    config_text = config_raw.decode()
    assert CANARY not in config_text and FILE_CANARY not in config_text
    labels = json.loads(config_raw)["config"]["Labels"]
    for key, value in req.labels.items():
        assert labels[key] == value
    files = _pushed_files(host, repo, manifest)
    assert files["greeting"].decode() == req.build_args["GREETING"] + "\n"  # arg reached RUN
    assert files["seen-marker"].decode().strip() == f"{base.repository.rsplit('-', 1)[1]}-v1"
    log = req.log_path.read_text()
    assert CANARY not in log and FILE_CANARY not in log
    if req.secrets:
        assert "token is ***" in log  # the secret was printed by RUN and redacted
    assert req.ref in log  # the log is the real build's log
    return dict(manifest)


@pytest.mark.parametrize("network", ["host", "none"])
def test_docker_builds_with_secrets_and_pushes(
    dockerd: str,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
    tmp_path: Path,
    network: str,
) -> None:
    base = upstream_base("docker")
    req = _request(tmp_path, builder_registry, base, f"e2e/docker-{network}", network)
    builder = get_builder("docker")
    assert isinstance(builder, DockerBuilder)
    description = builder.check()
    if builder.detect().mode is DockerMode.CLASSIC:
        pytest.skip(f"no BuildKit-capable docker client here: {description}")
    try:
        builder.build(req)
        digest = builder.push(req)
        _assert_pushed(req, digest, base)
        docker = builder.detect().probe.binary
        for argv in (["history", "--no-trunc", req.ref], ["image", "inspect", req.ref]):
            shown = run([docker, *argv])
            assert shown.ok, shown.output
            assert CANARY not in shown.stdout and FILE_CANARY not in shown.stdout
    finally:
        run([builder.detect().probe.binary, "image", "rm", "--force", req.ref])


@pytest.mark.parametrize("network", ["host", "none"])
def test_buildah_builds_with_secrets_and_pushes(
    buildah_root: Path,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
    tmp_path: Path,
    network: str,
) -> None:
    base = upstream_base("buildah")
    req = _request(tmp_path, builder_registry, base, f"e2e/buildah-{network}", network)
    builder = get_builder("buildah")
    assert isinstance(builder, BuildahBuilder)
    assert builder.check().startswith("buildah ")
    builder.build(req)
    digest = builder.push(req)
    manifest = _assert_pushed(req, digest, base)
    annotations = manifest.get("annotations")
    assert isinstance(annotations, dict)
    for key, value in req.annotations.items():
        assert annotations[key] == value
    shown = run(["buildah", *builder.detect().global_opts, "inspect", req.ref])
    assert shown.ok, shown.output
    assert CANARY not in shown.stdout and FILE_CANARY not in shown.stdout


def test_docker_classic_builder_refuses_secrets_and_builds_without(
    dockerd: str,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
    tmp_path: Path,
) -> None:
    newer = "/usr/local/bin/docker"
    if not os.access(newer, os.X_OK):
        pytest.skip(f"{newer} (a docker client without buildx) is not installed")
    builder = DockerBuilder({**os.environ, "IMAGECTL_DOCKER": newer})
    if builder.detect().mode is not DockerMode.CLASSIC:
        pytest.skip(f"{newer} is not classic-only here: {builder.check()}")
    base = upstream_base("docker")
    req = _request(tmp_path, builder_registry, base, "e2e/docker-classic", "host")
    with pytest.raises(BuildError, match="secrets need BuildKit"):
        builder.build(req)
    (req.context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG GREETING\n"
        'RUN echo "$GREETING" > /greeting && cp /etc/upstream-marker /seen-marker\n'
    )
    plain = BuildRequest(
        name=req.name,
        context=req.context,
        dockerfile=req.dockerfile,
        ref=req.ref,
        log_path=req.log_path,
        build_args=req.build_args,
        labels=req.labels,
        network="host",
    )
    try:
        builder.build(plain)
        _assert_pushed(plain, builder.push(plain), base)
    finally:
        run([newer, "image", "rm", "--force", req.ref])


def test_missing_builders_say_what_to_install(tmp_path: Path) -> None:
    empty_path = {"PATH": str(tmp_path)}
    with pytest.raises(BuildError, match=r"apt-get install docker\.io"):
        DockerBuilder(empty_path).check()
    with pytest.raises(BuildError, match="apt-get install buildah"):
        BuildahBuilder(empty_path).check()
    req = BuildRequest(
        name="x",
        context=tmp_path,
        dockerfile=Path("Dockerfile"),
        ref="a/b:1",
        log_path=tmp_path / "log",
    )
    with pytest.raises(BuildError, match="docker is not installed"):
        DockerBuilder(empty_path).build(req)


def test_buildah_multi_platform_pushes_an_index(
    buildah_root: Path, builder_registry: RegistryServer, tmp_path: Path
) -> None:
    context = _context(tmp_path, "FROM scratch\nCOPY payload /payload\n")
    (context / "payload").write_text("same bytes on every platform\n")
    req = BuildRequest(
        name="multi",
        context=context,
        dockerfile=Path("Dockerfile"),
        ref=f"{builder_registry.host}/e2e/buildah-multi:1.0.0",
        log_path=tmp_path / "build.log",
        labels={"org.opencontainers.image.version": "1.0.0"},
        platforms=["linux/amd64", "linux/arm64"],
    )
    builder = get_builder("buildah")
    builder.build(req)
    builder.build(req)  # a rebuild starts a fresh list instead of adding to the old one
    digest = builder.push(req)
    host, repo = builder_registry.host, "e2e/buildah-multi"
    assert manifest_digest(host, repo, "1.0.0") == digest
    index = json.loads(registry_get(host, f"{repo}/manifests/1.0.0"))
    platforms = sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    )
    assert platforms == ["linux/amd64", "linux/arm64"]


def _plain_request(
    tmp_path: Path,
    registry: RegistryServer,
    base: UpstreamBase,
    repo: str,
    dockerfile: str,
    **kw: Any,
) -> BuildRequest:
    return BuildRequest(
        name=repo.rsplit("/", 1)[-1],
        context=_context(tmp_path, dockerfile),
        dockerfile=Path("Dockerfile"),
        ref=f"{registry.host}/{repo}:1.0.0",
        log_path=tmp_path / "build.log",
        build_args={"BASE_IMAGE": base.pinned, "NONCE": secrets.token_hex(6)},
        labels={"org.opencontainers.image.version": "1.0.0"},
        **kw,
    )


RUN_STEP = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG NONCE
RUN echo "$NONCE" > /ran && id -u > /uid
USER nobody
RUN id -u > /tmp/uid-nobody && id -g > /tmp/gid-nobody
USER 0
RUN test "$(id -un)" = root && test "$(id -gn)" = root
"""


@pytest.fixture(params=["docker", "buildah"])
def tool_base(
    request: pytest.FixtureRequest, upstream_base: Callable[[str], UpstreamBase]
) -> tuple[str, UpstreamBase]:
    """Each builder with the stand-in base it pushed (and its daemon or storage ready)."""
    tool = str(request.param)
    request.getfixturevalue("dockerd" if tool == "docker" else "buildah_root")
    return tool, upstream_base(tool)


def test_run_step_builds_without_a_network_setting(
    tool_base: tuple[str, UpstreamBase], builder_registry: RegistryServer, tmp_path: Path
) -> None:
    """No `network:`: on this bridge-less dockerd, docker builds on the host network.

    The same build proves the stand-in base's /etc/passwd and /etc/group: `USER nobody`
    and `USER 0` resolve.
    """
    tool, base = tool_base
    req = _plain_request(tmp_path, builder_registry, base, f"e2e/{tool}-nonet", RUN_STEP)
    builder = get_builder(tool)
    description = builder.check()
    if isinstance(builder, DockerBuilder):
        bridge = run([builder.detect().probe.binary, "network", "inspect", "bridge"])
        assert builder.detect().probe.default_bridge is bridge.ok
        assert ("no default bridge network" in description) is not bridge.ok
    try:
        builder.build(req)
        digest = builder.push(req)
        host, _, rest = req.ref.partition("/")
        repo, _, tag = rest.rpartition(":")
        assert manifest_digest(host, repo, tag) == digest
        files = _pushed_files(host, repo, json.loads(registry_get(host, f"{repo}/manifests/{tag}")))
        assert files["ran"].decode() == req.build_args["NONCE"] + "\n"
        assert files["uid"].decode() == "0\n"
        assert files["tmp/uid-nobody"].decode() == "65534\n"
        assert files["tmp/gid-nobody"].decode() == "65534\n"
    finally:
        if isinstance(builder, DockerBuilder):
            run([builder.detect().probe.binary, "image", "rm", "--force", req.ref])


def test_timeout_kills_a_hanging_run_step_on_network_none(
    tool_base: tuple[str, UpstreamBase], builder_registry: RegistryServer, tmp_path: Path
) -> None:
    """`network: none` (buildah: oci isolation, runc puts RUN in a session of its own)."""
    tool, base = tool_base
    marker = sleep_marker()  # `sleep 600.<n>`: unique on this machine
    dockerfile = f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN sleep {marker}\n"
    req = _plain_request(
        tmp_path, builder_registry, base, f"e2e/{tool}-hang", dockerfile, network="none", timeout=15
    )
    builder = get_builder(tool)
    builder.check()
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # records whether the RUN step really ran before the timeout
        while not done.is_set() and not seen:
            seen.extend(with_arg(marker))
            done.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(BuildError, match=r"timed out after 15s") as info:
            builder.build(req)
    finally:
        done.set()
        watcher.join()
    assert seen, "the RUN step never started: raise the timeout of this test"
    assert "killed with every process it started" in str(info.value)
    assert str(req.log_path) in str(info.value)
    assert wait_gone(marker) == [], "the RUN step outlived its build"


def test_a_missing_bridge_the_probe_missed_is_named_with_the_fix(
    dockerd: str,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
    tmp_path: Path,
) -> None:
    """Should the probe think a bridge exists, the build error still names the fix."""
    builder = DockerBuilder()
    choice = builder.detect()
    if choice.probe.default_bridge:
        pytest.skip("this dockerd has a default bridge")
    builder._choice = dataclasses.replace(
        choice, probe=dataclasses.replace(choice.probe, default_bridge=True)
    )
    base = upstream_base("docker")
    req = _plain_request(tmp_path, builder_registry, base, "e2e/docker-nobridge", RUN_STEP)
    with pytest.raises(BuildError, match=r"no `bridge` network .*set `network: host`"):
        builder.build(req)
