"""Simulated "upstream" base images: busybox FROM scratch, pushed to a loopback registry.

With several platforms (``--platform linux/amd64,linux/arm64``, buildah only) the
base is one OCI index with an image per platform, each holding that architecture's
static busybox: the host's for amd64, Debian's ``busybox-static:arm64`` (fetched by
``scripts/fetch-arm64-busybox.sh``) for arm64. The images are built FROM scratch
with COPY only, so no emulation is needed.

The image holds the static busybox as ``/bin/busybox``, a symlink per applet
(``/bin/sh``, ``/bin/cat``, …), ``/etc/upstream-marker``, a minimal ``/etc/passwd``
and ``/etc/group`` (root and nobody, so that ``USER 0`` and ``USER nobody`` work)
and a world-writable ``/tmp``. Pushing again under
the same tag with another marker gives a new digest: a vendor security update.

    python -m devenv.upstream 127.0.0.1:5000 upstream/busybox 1.36 v1 [--tool buildah]
        [--platform linux/amd64,linux/arm64]

prints the pushed manifest digest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagectl.builders import BUILDERS, BuildRequest, get_builder
from imagectl.errors import ImagectlError
from imagectl.proc import run

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DOCKERFILE = 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n'
# one rootfs per architecture; buildah sets TARGETARCH for each platform it builds
DOCKERFILE_MULTI = 'FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nCMD ["/bin/sh"]\n'
ARM64_BUSYBOX_ENV = "IMAGECTL_ARM64_BUSYBOX"
FETCH_HINT = "run scripts/fetch-arm64-busybox.sh"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError("busybox is not installed: apt-get install busybox-static")


def arm64_busybox_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where scripts/fetch-arm64-busybox.sh puts Debian's static arm64 busybox."""
    env = os.environ if environ is None else environ
    if env.get(ARM64_BUSYBOX_ENV):
        return Path(env[ARM64_BUSYBOX_ENV])
    cache = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME", "/root")) / ".cache")
    return cache / "imagectl" / "arm64" / "busybox"


def busybox_for(arch: str) -> Path:
    """The static busybox binary for `arch` (``amd64``: the host's; ``arm64``: fetched)."""
    if arch == "amd64":
        return _busybox()
    if arch == "arm64":
        path = arm64_busybox_path()
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"no arm64 busybox at {path}: {FETCH_HINT}")
        return path
    raise RuntimeError(f"no static busybox for architecture {arch!r} (amd64 and arm64 only)")


def write_rootfs(rootfs: Path, marker: str, busybox: Path) -> None:
    """Lay out one platform's root filesystem with `busybox` (applets named by the host's)."""
    applets = run([str(_busybox()), "--list"]).stdout.split()
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(busybox, bin_dir / "busybox")
    for applet in applets:
        if applet != "busybox" and not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to("busybox")
    etc = rootfs / "etc"
    etc.mkdir()
    (etc / "upstream-marker").write_text(marker + "\n")
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    tmp = rootfs / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    # imagectl sends no empty directory to a builder (git keeps none, docs/inputs.md)
    (tmp / ".keep").write_text("")


def write_context(context: Path, marker: str, platforms: Sequence[str] = ()) -> None:
    """Lay out the upstream image's build context (Dockerfile + rootfs) in `context`.

    With several platforms: one ``rootfs-<arch>/`` per platform, picked by TARGETARCH.
    """
    if len(platforms) < 2:
        write_rootfs(context / "rootfs", marker, _busybox())
        (context / "Dockerfile").write_text(DOCKERFILE)
        return
    for platform in platforms:
        arch = platform.split("/")[1]
        write_rootfs(context / f"rootfs-{arch}", marker, busybox_for(arch))
    (context / "Dockerfile").write_text(DOCKERFILE_MULTI)


def push_upstream_base(
    registry_host: str,
    repository: str,
    tag: str,
    marker: str,
    *,
    tool: str = "docker",
    platforms: Sequence[str] = (),
) -> str:
    """Build the busybox base with `tool` (docker or buildah) and push it.

    Args:
        registry_host: ``127.0.0.1:PORT`` of the registry.
        repository: repository path, e.g. ``upstream/busybox``.
        tag: the tag to (re)point.
        marker: content of ``/etc/upstream-marker``; a new marker makes a new digest.
        tool: ``docker`` or ``buildah`` (honours IMAGECTL_DOCKER, IMAGECTL_BUILDAH_ROOT, …).
        platforms: several (e.g. linux/amd64 and linux/arm64) push one index; needs buildah.

    Returns:
        The registry manifest digest of the pushed image (of the index, for several platforms).
    """
    if tool not in BUILDERS:
        raise ValueError(f"tool must be one of {sorted(BUILDERS)}, not {tool!r}")
    ref = f"{registry_host}/{repository}:{tag}"
    with tempfile.TemporaryDirectory(prefix="imagectl-upstream-") as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        write_context(context, marker, platforms)
        req = BuildRequest(
            name=repository.rsplit("/", 1)[-1],
            context=context,
            dockerfile=context / "Dockerfile",
            ref=ref,
            log_path=Path(tmp) / "build.log",
            labels={"org.opencontainers.image.version": tag, "dev.imagectl.upstream": marker},
            platforms=tuple(platforms),
        )
        builder = get_builder(tool)
        builder.build(req)
        return builder.push(req)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: push an upstream base and print its digest."""
    parser = argparse.ArgumentParser(prog="python -m devenv.upstream", description=__doc__)
    parser.add_argument("host", help="registry host, e.g. 127.0.0.1:5000")
    parser.add_argument("repository", help="repository, e.g. upstream/busybox")
    parser.add_argument("tag")
    parser.add_argument("marker", help="content of /etc/upstream-marker")
    parser.add_argument("--tool", choices=sorted(BUILDERS), default="docker")
    parser.add_argument(
        "--platform", default="", help="comma-separated, e.g. linux/amd64,linux/arm64"
    )
    args = parser.parse_args(argv)
    try:
        digest = push_upstream_base(
            args.host,
            args.repository,
            args.tag,
            args.marker,
            tool=args.tool,
            platforms=[p for p in args.platform.split(",") if p],
        )
    except (ImagectlError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
