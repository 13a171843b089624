"""The Builder protocol and the request/result types every backend shares.

A backend builds one image locally under `BuildRequest.ref`, then pushes that
reference and reports the registry manifest digest. Backends are small modules
registered in `imagectl.builders.BUILDERS`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from imagectl.builders.iid import ImageIds
from imagectl.domain.reference import InvalidReferenceError, parse_reference
from imagectl.durations import format_duration
from imagectl.errors import BuildError
from imagectl.proc import CommandTimeout, ProcResult, run
from imagectl.staging import staged_context

_SECRET_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$")
_NETWORKS = ("default", "host", "none")
_SECRET_FILE_LIMIT = 1 << 20  # larger files are not read back for redaction


class Output(Enum):
    """What a build leaves under `BuildRequest.ref`: the one decision platforms make.

    Every backend asks `BuildRequest.output` and nothing else about the platforms'
    number when it chooses its flags, its push and its preparation.
    """

    IMAGE = "image"  # one image: no platform named, or one
    INDEX = "index"  # an image index (manifest list) of one image per platform


@dataclass(frozen=True)
class SecretSpec:
    """A build secret: exposed to `RUN --mount=type=secret,id=<id>`, never a build arg.

    Exactly one of `env` (name of an environment variable in `BuildRequest.env`)
    and `file` (a file on the build host) gives the value.
    """

    id: str
    env: str | None = None
    file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """Everything a backend needs to build and push one image.

    `annotations` are OCI manifest annotations (``org.opencontainers.image.base.name``
    and ``.base.digest``). A backend writes them where its output format can hold
    them and ignores them where it cannot: buildah writes them on the image
    manifest; the docker backend goes through the docker image store, which keeps
    no manifest annotations, so it ignores them (the same facts are labels anyway).

    `env` is the environment secret values are read from (`SecretSpec.env`); it is
    never passed wholesale to the build.

    `timeout` bounds each command of the backend (the build, the push): when it
    expires the command and every process it started are killed (`proc.kill_tree`)
    and the backend raises a BuildError saying "timed out after …".
    """

    name: str
    context: Path
    dockerfile: Path
    ref: str
    log_path: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platforms: Sequence[str] = ()
    network: str | None = None
    secrets: Sequence[SecretSpec] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds each build or push command may run; None: no limit

    @property
    def output(self) -> Output:
        """An index for several platforms, else a single image."""
        return Output.INDEX if len(self.platforms) > 1 else Output.IMAGE

    @property
    def dockerfile_path(self) -> Path:
        """The Dockerfile; a relative `dockerfile` is taken inside the context."""
        return self.dockerfile if self.dockerfile.is_absolute() else self.context / self.dockerfile


class Builder(Protocol):
    """A build backend (docker CLI, buildah)."""

    name: str

    def check(self) -> str:
        """Detect the backend's mode.

        Returns:
            A human description of what will be used, e.g. ``docker 20.10.24 (BuildKit)``.

        Raises:
            BuildError: the tool is missing or unusable; the message says what to install.
        """
        ...

    def build(self, req: BuildRequest) -> None:
        """Build the image locally, tagged `req.ref`; output is appended to `req.log_path`.

        Raises:
            BuildError: the build failed or the request needs a missing capability.
        """
        ...

    def push(self, req: BuildRequest) -> str:
        """Push `req.ref` (built by `build`) to its registry.

        Returns:
            The registry manifest digest (``sha256:…``) as reported by the tool.

        Raises:
            BuildError: the push failed.
        """
        ...


class CliBuilder:
    """What the command-line builders share: the environment they run in, and the image
    id (config digest) each build wrote with ``--iidfile``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self._ids = ImageIds()

    def image_id(self, req: BuildRequest) -> str | None:
        """The config digest of the last build of `req.ref` (`--iidfile`)."""
        return self._ids.get(req.ref)


def registry_host(ref: str) -> str:
    """The registry host of an image reference (``docker.io`` when it names none), by the
    one reference grammar (`imagectl.domain.reference`); "" for text that is not one."""
    try:
        return parse_reference(ref).registry
    except InvalidReferenceError:
        return ""


def is_loopback_registry(ref: str) -> bool:
    """Whether the reference's registry is on loopback (plain HTTP, no TLS)."""
    return bool(_LOOPBACK.match(registry_host(ref)))


def check_request(req: BuildRequest) -> None:
    """Reject what no backend can build, with a message naming the image.

    Raises:
        BuildError: unknown network, malformed secret, missing secret value.
    """
    if req.network is not None and req.network not in _NETWORKS:
        raise BuildError(
            f"{req.name}: network {req.network!r} is not one of {', '.join(_NETWORKS)}"
        )
    for spec in req.secrets:
        if not _SECRET_ID.match(spec.id):
            raise BuildError(f"{req.name}: secret id {spec.id!r} must match [A-Za-z0-9._-]+")
        if (spec.env is None) == (spec.file is None):
            raise BuildError(f"{req.name}: secret {spec.id!r} needs exactly one of env or file")
        if spec.env is not None and spec.env not in req.env:
            raise BuildError(f"{req.name}: secret {spec.id!r} reads ${spec.env}, which is not set")
        if spec.file is not None and not spec.file.is_file():
            raise BuildError(f"{req.name}: secret {spec.id!r}: file {spec.file} does not exist")


def secret_values(req: BuildRequest) -> list[str]:
    """The secret values of a request, for redaction of everything a tool prints."""
    values: list[str] = []
    for spec in req.secrets:
        if spec.env is not None and spec.env in req.env:
            values.append(req.env[spec.env])
        elif (
            spec.file is not None
            and spec.file.is_file()
            and spec.file.stat().st_size <= _SECRET_FILE_LIMIT
        ):
            values.append(spec.file.read_text(errors="replace"))
    return values


@contextmanager
def secret_files(req: BuildRequest) -> Iterator[dict[str, Path]]:
    """Write env-sourced secrets to private files (0600) that are deleted afterwards.

    For tools that only take ``--secret id=X,src=FILE``. Yields secret id -> file.
    """
    with tempfile.TemporaryDirectory(prefix="imagectl-secrets-") as tmp:
        os.chmod(tmp, 0o700)
        paths: dict[str, Path] = {}
        for spec in req.secrets:
            if spec.env is None:
                continue
            path = Path(tmp) / spec.id
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(req.env[spec.env])
            paths[spec.id] = path
        yield paths


@contextmanager
def staged(req: BuildRequest, builder: str) -> Iterator[BuildRequest]:
    """`req` building from a staged copy of exactly its inputs (see `imagectl.staging`).

    The copy lives beside the build log (under ``.imagectl/``, on the repository's
    filesystem) and is removed afterwards; the Dockerfile is read where it is.
    """
    with staged_context(req.context, req.dockerfile, builder, req.log_path.parent) as context:
        yield replace(req, context=context, dockerfile=req.dockerfile_path)


def failure(what: str, req: BuildRequest, result: ProcResult, *, lines: int = 25) -> BuildError:
    """A BuildError for a failed command: exit status, the log file, the output's tail."""
    tail = "\n".join(result.output.splitlines()[-lines:])
    return BuildError(
        f"{req.name}: {what} failed (exit {result.returncode}); full log: {req.log_path}\n{tail}"
    )


def build_flags(req: BuildRequest, secret_srcs: Mapping[str, Path]) -> list[str]:
    """Flags both backends spell alike: platform, target, build args, labels, secrets.

    `secret_srcs` maps a secret id to a private file for env secrets the tool
    cannot read itself; other env secrets pass by name, file secrets by path.
    Secret values never appear on a command line.
    """
    argv: list[str] = []
    if req.platforms:
        argv += ["--platform", ",".join(req.platforms)]
    if req.target:
        argv += ["--target", req.target]
    for key, value in sorted(req.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(req.labels.items()):
        argv += ["--label", f"{key}={value}"]
    for spec in req.secrets:
        if spec.file is not None:
            argv += ["--secret", f"id={spec.id},src={spec.file}"]
        elif spec.id in secret_srcs:
            argv += ["--secret", f"id={spec.id},src={secret_srcs[spec.id]}"]
        else:
            argv += ["--secret", f"id={spec.id},env={spec.env}"]
    return argv


def run_bounded(
    what: str,
    req: BuildRequest,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    secrets: Sequence[str],
) -> ProcResult:
    """Run one build or push command of `req` within `req.timeout`, logged to its log.

    Raises:
        BuildError: the command ran out of time; it and every process it started
            (RUN steps included) were killed.
    """
    try:
        return run(argv, env=env, log_path=req.log_path, secrets=secrets, timeout=req.timeout)
    except CommandTimeout as exc:
        left = f"; still running after SIGKILL: pid {', '.join(map(str, exc.survivors))}"
        raise BuildError(
            f"{req.name}: {what} timed out after {format_duration(exc.timeout)} and was "
            f"killed with every process it started{left if exc.survivors else ''} "
            f"(raise `timeout:` in the manifest if it needs longer); full log: {req.log_path}"
        ) from None
