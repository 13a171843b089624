"""The buildah backend: daemonless, rootless-capable builds from a Dockerfile.

Environment knobs (all optional):
  IMAGECTL_BUILDAH_ROOT            storage under this directory (``storage/``, ``run/``)
                                   instead of the system store; tests use a temp dir.
  IMAGECTL_BUILDAH_STORAGE_DRIVER  force a storage driver; by default the configured one,
                                   or ``vfs`` when that (overlay) does not work here.
  IMAGECTL_BUILDAH_ISOLATION       ``chroot`` (default) or ``oci``/``rootless``. chroot
                                   isolation can only share the host network, so a build
                                   with ``network: none`` runs with ``oci`` isolation.

Loopback registries speak plain HTTP: when the pushed reference or ``BASE_IMAGE``
lives on one, buildah gets ``--tls-verify=false`` (for that command as a whole).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from imagectl.builders import base
from imagectl.errors import BuildError
from imagectl.proc import CommandTimeout, ExecutableNotFound, ProcResult, run

INSTALL_HINT = "install buildah (Debian/Ubuntu: apt-get install buildah) or use builder: docker"
_PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class BuildahSetup:
    """What was detected: the version and how storage and isolation are configured."""

    version: str
    global_opts: tuple[str, ...]  # --root/--runroot/--storage-driver, before the subcommand
    driver: str
    isolation: str

    @property
    def description(self) -> str:
        where = ""
        if "--root" in self.global_opts:
            where = f" at {self.global_opts[self.global_opts.index('--root') + 1]}"
        return f"buildah {self.version} (storage {self.driver}{where}, isolation {self.isolation})"

    @property
    def secret_env(self) -> bool:
        """Whether ``--secret id=X,env=VAR`` is known to work (verified with 1.28)."""
        match = re.match(r"(\d+)\.(\d+)", self.version)
        if match is None:
            return False
        return (int(match.group(1)), int(match.group(2))) >= (1, 28)


def isolation_for(setup: BuildahSetup, network: str | None, explicit: bool) -> str:
    """The isolation for a build: chroot cannot make a network namespace of its own.

    Raises:
        BuildError: chroot isolation was asked for explicitly together with network none.
    """
    if network == "none" and setup.isolation == "chroot":
        if explicit:
            raise BuildError(
                "buildah --isolation chroot can only use the host network; unset "
                "IMAGECTL_BUILDAH_ISOLATION or use network: host"
            )
        return "oci"
    return setup.isolation


def tls_verify_off(req: base.BuildRequest) -> bool:
    """Whether any registry the build or push talks to by name is on loopback (plain HTTP)."""
    upstream = req.build_args.get("BASE_IMAGE", "")
    return base.is_loopback_registry(req.ref) or (
        bool(upstream) and base.is_loopback_registry(upstream)
    )


@dataclass(frozen=True)
class BuildahOutput:
    """How buildah writes and pushes one kind of `Output`."""

    build: tuple[str, ...]  # `bud` flags naming what it writes
    push: tuple[str, ...]  # the subcommand that pushes it
    fresh_list: bool  # `--manifest` adds to an existing list: remove it first


def buildah_output(req: base.BuildRequest) -> BuildahOutput:
    """The flags and the push for what `req` builds (an image, or an index)."""
    if req.output is base.Output.INDEX:
        # No --layers: buildah (1.28) serves every platform of a multi-platform build
        # from the first platform's cached layers; the list would hold one image.
        return BuildahOutput(("--manifest", req.ref), ("manifest", "push", "--all"), True)
    return BuildahOutput(("--layers", "--tag", req.ref), ("push",), False)


def build_argv(
    setup: BuildahSetup,
    req: base.BuildRequest,
    *,
    isolation: str,
    secret_srcs: Mapping[str, Path],
    iidfile: Path | None = None,
) -> list[str]:
    """The buildah command line that builds `req` (pure; secret values never appear);
    `iidfile` receives the image id (config digest)."""
    argv = ["buildah", *setup.global_opts, "bud", "--format", "oci", "--isolation", isolation]
    if req.network and req.network != "default":
        argv += ["--network", req.network]
    if tls_verify_off(req):
        argv.append("--tls-verify=false")
    argv += ["--file", str(req.dockerfile_path), *buildah_output(req).build]
    if iidfile is not None and req.output is not base.Output.INDEX:  # one image id: one image
        argv += ["--iidfile", str(iidfile)]
    argv += base.build_flags(req, secret_srcs)
    for key, value in sorted(req.annotations.items()):
        argv += ["--annotation", f"{key}={value}"]
    argv.append(str(req.context))
    return argv


def push_argv(setup: BuildahSetup, req: base.BuildRequest, digestfile: Path) -> list[str]:
    """The buildah command line that pushes `req.ref` and writes its manifest digest."""
    argv = ["buildah", *setup.global_opts, *buildah_output(req).push]
    argv += ["--digestfile", str(digestfile)]
    if tls_verify_off(req):
        argv.append("--tls-verify=false")
    return [*argv, req.ref, f"docker://{req.ref}"]


class BuildahBuilder(base.CliBuilder):
    """Builds with buildah (no daemon), in the system store or ``$IMAGECTL_BUILDAH_ROOT``."""

    name = "buildah"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(environ)
        self._setup: BuildahSetup | None = None

    def _probe(self, argv: list[str]) -> ProcResult:
        try:
            return run(argv, env=self.environ, timeout=_PROBE_TIMEOUT)
        except ExecutableNotFound:
            raise BuildError(f"buildah is not installed: {INSTALL_HINT}") from None
        except CommandTimeout as exc:
            raise BuildError(f"buildah does not answer: {exc}") from None

    def detect(self) -> BuildahSetup:
        """Probe buildah once: version, a storage driver that works, isolation."""
        if self._setup is not None:
            return self._setup
        version = self._probe(["buildah", "version"])
        match = re.search(r"^Version:\s*(\S+)", version.stdout, re.MULTILINE)
        opts: list[str] = []
        root = self.environ.get("IMAGECTL_BUILDAH_ROOT", "").strip()
        if root:
            opts += ["--root", str(Path(root) / "storage"), "--runroot", str(Path(root) / "run")]
        forced = self.environ.get("IMAGECTL_BUILDAH_STORAGE_DRIVER", "").strip()
        candidates = [forced] if forced else ["", "vfs"]
        driver, errors = "", []
        for candidate in candidates:
            extra = ["--storage-driver", candidate] if candidate else []
            info = self._probe(
                ["buildah", *opts, *extra, "info", "--format", "{{.store.GraphDriverName}}"]
            )
            if info.ok:
                opts += extra
                driver = info.stdout.strip() or candidate
                break
            errors.append(info.output.strip())
        else:
            raise BuildError(
                "buildah cannot open its storage: "
                + "; ".join(errors)[-1500:]
                + " (set IMAGECTL_BUILDAH_STORAGE_DRIVER=vfs or IMAGECTL_BUILDAH_ROOT)"
            )
        isolation = self.environ.get("IMAGECTL_BUILDAH_ISOLATION", "").strip() or "chroot"
        self._setup = BuildahSetup(
            version=match.group(1) if match else "?",
            global_opts=tuple(opts),
            driver=driver,
            isolation=isolation,
        )
        return self._setup

    def check(self) -> str:
        """See `Builder.check`."""
        return self.detect().description

    def build(self, req: base.BuildRequest) -> None:
        """See `Builder.build`."""
        base.check_request(req)
        setup = self.detect()
        explicit = bool(self.environ.get("IMAGECTL_BUILDAH_ISOLATION", "").strip())
        isolation = isolation_for(setup, req.network, explicit)
        secrets = base.secret_values(req)
        if buildah_output(req).fresh_list:
            run(
                ["buildah", *setup.global_opts, "manifest", "rm", req.ref],
                env=self.environ,
                log_path=req.log_path,
                secrets=secrets,
            )
        env = dict(self.environ)
        if setup.secret_env:
            env.update({s.env: req.env[s.env] for s in req.secrets if s.env is not None})
        holder: AbstractContextManager[dict[str, Path]]
        holder = nullcontext({}) if setup.secret_env else base.secret_files(req)
        with holder as srcs, base.staged(req, self.name) as sent, self._ids.capture(req.ref) as iid:
            argv = build_argv(setup, sent, isolation=isolation, secret_srcs=srcs, iidfile=iid)
            result = base.run_bounded("buildah build", req, argv, env=env, secrets=secrets)
        if not result.ok:
            raise base.failure("buildah build", req, result)

    def push(self, req: base.BuildRequest) -> str:
        """See `Builder.push`."""
        setup = self.detect()
        with tempfile.TemporaryDirectory(prefix="imagectl-buildah-") as tmp:
            digestfile = Path(tmp) / "digest"
            result = base.run_bounded(
                f"buildah push {req.ref}",
                req,
                push_argv(setup, req, digestfile),
                env=self.environ,
                secrets=base.secret_values(req),
            )
            if not result.ok:
                raise base.failure(f"buildah push {req.ref}", req, result)
            digest = digestfile.read_text().strip() if digestfile.exists() else ""
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise BuildError(f"{req.name}: buildah push did not report a digest for {req.ref}")
        return digest
