"""The docker CLI backend: buildx, the client's built-in BuildKit, or the classic builder.

Detection runs a few cheap commands per docker client (`probe_docker`) and then
decides with a pure function over what they found (`detect_mode`,
`choose_docker`), so the decision is unit-tested without docker.

Which client: ``$IMAGECTL_DOCKER`` when set; otherwise ``docker`` on PATH, unless
it can only use the classic builder (a docker >= 23 client without the buildx
plugin) and ``/usr/bin/docker`` can do better (docker 18.09–22.x has BuildKit
built in, enabled by ``DOCKER_BUILDKIT=1``). The choice is spelled out by `check`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from imagectl.builders.base import (
    BuildRequest,
    CliBuilder,
    Output,
    build_flags,
    check_request,
    failure,
    is_loopback_registry,
    run_bounded,
    secret_files,
    secret_values,
    staged,
)
from imagectl.errors import BuildError
from imagectl.proc import CommandTimeout, ExecutableNotFound, ProcResult, run

SYSTEM_DOCKER = "/usr/bin/docker"
INSTALL_HINT = (
    "install the docker CLI and daemon (Debian/Ubuntu: apt-get install docker.io; "
    "add the buildx plugin for BuildKit on docker >= 23) or use builder: buildah"
)
_PROBE_TIMEOUT = 60.0
_NO_NETWORK = re.compile(r"not found|no such network", re.IGNORECASE)
_NO_BRIDGE = re.compile(r"network bridge not found|no such network: bridge", re.IGNORECASE)
_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class DockerMode(Enum):
    """How the docker CLI builds, best first."""

    BUILDX = "buildx"
    BUILDKIT = "BuildKit"
    CLASSIC = "classic builder"

    @property
    def rank(self) -> int:
        return {DockerMode.BUILDX: 2, DockerMode.BUILDKIT: 1, DockerMode.CLASSIC: 0}[self]


@dataclass(frozen=True)
class DockerProbe:
    """What one docker client reported about itself and its daemon."""

    binary: str
    client_version: str
    client_api: str
    buildx_version: str | None = None  # None: `docker buildx version` failed
    buildx_driver: str | None = None  # from `docker buildx inspect`
    buildkit_env: bool = False  # `DOCKER_BUILDKIT=1 docker build --help` succeeded
    server_version: str | None = None  # None: the daemon did not answer
    server_api: str | None = None
    server_os: str | None = None
    daemon_error: str = ""
    default_bridge: bool = True  # False: dockerd has no `bridge` network (--bridge=none)


@dataclass(frozen=True)
class DockerChoice:
    """The client to use, how it builds, and why it was chosen."""

    probe: DockerProbe
    mode: DockerMode
    note: str = ""

    @property
    def description(self) -> str:
        mode = self.mode.value
        if self.mode is DockerMode.BUILDX:
            mode = f"buildx {self.probe.buildx_version}"
        text = f"docker {self.probe.client_version} ({mode}) at {self.probe.binary}"
        notes = [note for note in (self.note, self.bridge_note) if note]
        return "; ".join([text, *notes])

    @property
    def builds_in_daemon(self) -> bool:
        """Whether RUN steps run in dockerd itself (not in a buildx builder container)."""
        return self.mode is not DockerMode.BUILDX or self.probe.buildx_driver in (None, "docker")

    @property
    def needs_host_network(self) -> bool:
        """Whether RUN steps on the default network would fail: dockerd has no bridge."""
        return self.builds_in_daemon and not self.probe.default_bridge

    @property
    def bridge_note(self) -> str:
        if not self.needs_host_network:
            return ""
        return (
            "dockerd has no default bridge network (--bridge=none): RUN steps of images "
            "that set no `network:` use the host network"
        )

    @property
    def multi_platform(self) -> bool:
        """Whether several platforms can be built at once (buildx, non-docker driver)."""
        return self.mode is DockerMode.BUILDX and self.probe.buildx_driver not in (None, "docker")

    @property
    def secret_env(self) -> bool:
        """Whether ``--secret id=X,env=VAR`` works (BuildKit >= 0.8: buildx, docker 20.10+)."""
        if self.mode is DockerMode.BUILDX:
            return True
        return self.mode is DockerMode.BUILDKIT and _version(self.probe.client_version) >= (20, 10)


def _version(text: str | None) -> tuple[int, ...]:
    """Leading numeric components: '20.10.24+dfsg1' -> (20, 10, 24), 'v0.12.1' -> (0, 12, 1)."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", (text or "").strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def detect_mode(probe: DockerProbe) -> DockerMode:
    """How this client would build: buildx, then built-in BuildKit, else classic.

    BuildKit through ``DOCKER_BUILDKIT=1`` needs the client to accept it (clients
    >= 23 refuse without the buildx plugin) and API >= 1.39 on both ends with a
    Linux daemon (where BuildKit is built into dockerd since 18.09).
    """
    if probe.buildx_version is not None:
        return DockerMode.BUILDX
    if (
        probe.buildkit_env
        and _version(probe.client_api) >= (1, 39)
        and (probe.server_api is None or _version(probe.server_api) >= (1, 39))
        and probe.server_os in (None, "linux")
    ):
        return DockerMode.BUILDKIT
    return DockerMode.CLASSIC


def choose_docker(probes: Sequence[DockerProbe], *, explicit: bool = False) -> DockerChoice:
    """Pick the client to build with from probes ordered by preference (PATH first).

    The first client wins unless it would fall back to the classic builder where
    another does better; with `explicit` (``$IMAGECTL_DOCKER``) only the first counts.

    Raises:
        BuildError: no client, or the daemon does not answer the chosen one.
    """
    if not probes:
        raise BuildError(f"docker is not installed: {INSTALL_HINT}")
    first = probes[0]
    chosen, mode = first, detect_mode(first)
    if not explicit and mode is DockerMode.CLASSIC:
        for other in probes[1:]:
            if detect_mode(other).rank > mode.rank:
                chosen, mode = other, detect_mode(other)
                break
    note = ""
    if chosen is not first:
        note = (
            f"chosen over {first.binary} (docker {first.client_version}: no buildx plugin, "
            f"classic builder only)"
        )
    elif explicit:
        note = "set by IMAGECTL_DOCKER"
    if chosen.server_version is None:
        detail = chosen.daemon_error.strip() or "no answer"
        raise BuildError(
            f"the docker daemon does not answer {chosen.binary}: {detail} "
            "(start dockerd, or point DOCKER_HOST at a running daemon)"
        )
    return DockerChoice(chosen, mode, note)


def docker_candidates(environ: Mapping[str, str]) -> tuple[list[str], bool]:
    """Docker clients to probe, in order of preference, and whether the user named one.

    Raises:
        BuildError: ``$IMAGECTL_DOCKER`` names something that is not an executable.
    """
    named = environ.get("IMAGECTL_DOCKER", "").strip()
    if named:
        found = shutil.which(named, path=environ.get("PATH", os.defpath))
        if found is None:
            raise BuildError(f"IMAGECTL_DOCKER={named} is not an executable: {INSTALL_HINT}")
        return [found], True
    on_path = shutil.which("docker", path=environ.get("PATH", os.defpath))
    if on_path is None:
        return [], False
    candidates = [on_path]
    if os.access(SYSTEM_DOCKER, os.X_OK) and os.path.realpath(SYSTEM_DOCKER) != os.path.realpath(
        on_path
    ):
        candidates.append(SYSTEM_DOCKER)
    return candidates, False


def _quiet(argv: Sequence[str], env: Mapping[str, str]) -> ProcResult | None:
    try:
        return run(argv, env=env, timeout=_PROBE_TIMEOUT)
    except CommandTimeout:
        return None


def probe_docker(binary: str, environ: Mapping[str, str]) -> DockerProbe:
    """Ask one docker client about itself, its buildx plugin and its daemon."""
    env = {k: v for k, v in environ.items() if k != "DOCKER_BUILDKIT"}
    version = _quiet([binary, "version", "--format", "{{json .}}"], env)
    info: dict[str, Any] = {}
    if version is not None and version.stdout.strip():
        try:
            info = json.loads(version.stdout.strip().splitlines()[-1])
        except ValueError:
            info = {}
    client: dict[str, Any] = info.get("Client") or {}
    server: dict[str, Any] | None = info.get("Server") or None
    buildx = _quiet([binary, "buildx", "version"], env)
    buildx_version = None
    driver = None
    if buildx is not None and buildx.ok:
        words = buildx.stdout.split()
        buildx_version = words[1] if len(words) > 1 else "?"
        inspect = _quiet([binary, "buildx", "inspect"], env)
        if inspect is not None and inspect.ok:
            match = re.search(r"^Driver:\s*(\S+)", inspect.stdout, re.MULTILINE)
            driver = match.group(1) if match else None
    helped = _quiet([binary, "build", "--help"], {**env, "DOCKER_BUILDKIT": "1"})
    bridge = (
        _quiet([binary, "network", "inspect", "--format", "{{.Name}}", "bridge"], env)
        if server
        else None
    )
    return DockerProbe(
        binary=binary,
        client_version=str(client.get("Version", "?")),
        client_api=str(client.get("ApiVersion", "")),
        buildx_version=buildx_version,
        buildx_driver=driver,
        buildkit_env=helped is not None and helped.ok,
        server_version=str(server["Version"]) if server and "Version" in server else None,
        server_api=str(server.get("ApiVersion", "")) if server else None,
        server_os=str(server.get("Os", "linux")) if server else None,
        daemon_error="" if server else (version.stderr if version else "timed out"),
        default_bridge=bridge is None or bridge.ok or not _NO_NETWORK.search(bridge.output),
    )


def build_network(choice: DockerChoice, requested: str | None) -> str | None:
    """The ``--network`` of a build: as requested, or ``host`` where the default cannot work.

    Unset and ``default`` both mean "the daemon's default network", which is its
    bridge; a dockerd started with ``--bridge=none`` has none, and every RUN step
    would fail with "network bridge not found". Such a daemon builds on the host
    network (what `network: host` asks for), and `check` says so once.
    """
    if requested in (None, "default"):
        return "host" if choice.needs_host_network else None
    return requested


def build_argv(
    choice: DockerChoice,
    req: BuildRequest,
    *,
    secret_srcs: Mapping[str, Path],
    push_to: Path | None = None,
    iidfile: Path | None = None,
) -> list[str]:
    """The docker command line that builds `req` (pure; secret values never appear).

    Args:
        choice: the detected client and mode.
        req: the build.
        secret_srcs: secret id -> private file, for env secrets the client cannot read
            from its environment.
        push_to: multi-platform buildx only: push from the build cache and write the
            build metadata (digest) to this file.
        iidfile: single-platform only: write the image id (config digest) here.
    """
    binary, mode = choice.probe.binary, choice.mode
    argv = [binary, "buildx", "build"] if mode is DockerMode.BUILDX else [binary, "build"]
    if mode is not DockerMode.CLASSIC:
        argv += ["--progress", "plain"]
    if req.output is Output.INDEX:
        output = f"type=image,name={req.ref},push={'true' if push_to else 'false'}"
        if is_loopback_registry(req.ref):
            output += ",registry.insecure=true"
        argv += ["--output", output]
        if push_to is not None:
            argv += ["--metadata-file", str(push_to)]
        if _version(choice.probe.buildx_version) >= (0, 12):
            for key, value in sorted(req.annotations.items()):
                argv += ["--annotation", f"index,manifest:{key}={value}"]
    else:
        if mode is DockerMode.BUILDX:
            argv.append("--load")
        argv += ["--tag", req.ref]
        if iidfile is not None:
            argv += ["--iidfile", str(iidfile)]
    argv += ["--file", str(req.dockerfile_path)]
    network = build_network(choice, req.network)
    if network:
        argv += ["--network", network]
    argv += build_flags(req, secret_srcs)
    argv.append(str(req.context))
    return argv


def multi_platform_refusal(choice: DockerChoice, name: str, platforms: Sequence[str]) -> str:
    """Why `choice` cannot build `name` for several platforms, or "" when it can."""
    if choice.multi_platform:
        return ""
    return (
        f"{name}: building for several platforms ({', '.join(platforms)}) needs docker "
        "buildx with a multi-platform driver: install the buildx plugin "
        "(docker-buildx-plugin / docker-buildx) and run `docker buildx create --driver "
        f"docker-container --use`; found {choice.description}. Build one platform per "
        "image or use builder: buildah"
    )


def parse_push_digest(output: str) -> str | None:
    """The manifest digest from `docker push` output (``TAG: digest: sha256:… size: N``)."""
    found = _PUSH_DIGEST.findall(output)
    return found[-1] if found else None


class DockerBuilder(CliBuilder):
    """Builds with the docker CLI against a local or remote (DOCKER_HOST) daemon."""

    name = "docker"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(environ)
        self._choice: DockerChoice | None = None

    def detect(self) -> DockerChoice:
        """Probe the docker clients once and remember the choice."""
        if self._choice is None:
            try:
                candidates, explicit = docker_candidates(self.environ)
                probes = [probe_docker(binary, self.environ) for binary in candidates]
            except ExecutableNotFound as exc:
                raise BuildError(f"{exc}: {INSTALL_HINT}") from None
            self._choice = choose_docker(probes, explicit=explicit)
        return self._choice

    def check(self) -> str:
        """See `Builder.check`."""
        return self.detect().description

    def _env(self, choice: DockerChoice, req: BuildRequest, use_env: bool) -> dict[str, str]:
        env = dict(self.environ)
        if choice.mode is DockerMode.BUILDKIT:
            env["DOCKER_BUILDKIT"] = "1"
        elif choice.mode is DockerMode.CLASSIC:
            env["DOCKER_BUILDKIT"] = "0"
        if use_env:
            for spec in req.secrets:
                if spec.env is not None:
                    env[spec.env] = req.env[spec.env]
        return env

    def _run_build(
        self, req: BuildRequest, push_to: Path | None = None, iidfile: Path | None = None
    ) -> ProcResult:
        check_request(req)
        choice = self.detect()
        if req.secrets and choice.mode is DockerMode.CLASSIC:
            raise BuildError(
                f"{req.name}: build secrets need BuildKit, but {choice.description}; "
                "install the buildx plugin (docker-buildx-plugin / docker-buildx) or use "
                "builder: buildah"
            )
        if req.output is Output.INDEX:
            refusal = multi_platform_refusal(choice, req.name, req.platforms)
            if refusal:
                raise BuildError(refusal)
        use_env = choice.secret_env
        holder: AbstractContextManager[dict[str, Path]]
        holder = nullcontext({}) if use_env else secret_files(req)
        with holder as srcs, staged(req, self.name) as sent:
            argv = build_argv(choice, sent, secret_srcs=srcs, push_to=push_to, iidfile=iidfile)
            what = "docker buildx push" if push_to else "docker build"
            env = self._env(choice, req, use_env)
            return run_bounded(what, req, argv, env=env, secrets=secret_values(req))

    def build(self, req: BuildRequest) -> None:
        """See `Builder.build`."""
        if req.output is Output.INDEX:
            result = self._run_build(req)
        else:
            with self._ids.capture(req.ref) as iidfile:
                result = self._run_build(req, iidfile=iidfile)
        if not result.ok and _NO_BRIDGE.search(result.output):
            # the bridge probe said it exists (or could not tell): name the fix anyway
            raise BuildError(
                f"{req.name}: the docker daemon has no `bridge` network for RUN steps "
                f"(dockerd --bridge=none); set `network: host` or `network: none` for this "
                f"image; full log: {req.log_path}"
            )
        if not result.ok:
            raise failure("docker build", req, result)

    def push(self, req: BuildRequest) -> str:
        """See `Builder.push`."""
        choice = self.detect()
        if req.output is Output.INDEX:
            # A multi-platform image never enters the docker image store: push it from
            # the build cache, which the earlier build() filled, so nothing rebuilds.
            with tempfile.TemporaryDirectory(prefix="imagectl-buildx-") as tmp:
                meta = Path(tmp) / "metadata.json"
                result = self._run_build(req, push_to=meta)
                if not result.ok:
                    raise failure("docker buildx push", req, result)
                digest = _metadata_digest(meta)
        else:
            result = run_bounded(
                f"docker push {req.ref}",
                req,
                [choice.probe.binary, "push", req.ref],
                env=self.environ,
                secrets=secret_values(req),
            )
            if not result.ok:
                raise failure(f"docker push {req.ref}", req, result)
            digest = parse_push_digest(result.stdout)
        if digest is None:
            raise BuildError(f"{req.name}: docker did not report a digest for {req.ref}")
        return digest


def _metadata_digest(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text()).get("containerimage.digest")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None
