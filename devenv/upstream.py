"""Simulated "upstream" base images: busybox FROM scratch, pushed to a loopback registry.

The image holds the static busybox as ``/bin/busybox``, a symlink per applet
(``/bin/sh``, ``/bin/cat``, …), ``/etc/upstream-marker``, a minimal ``/etc/passwd``
and ``/etc/group`` (root and nobody, so that ``USER 0`` and ``USER nobody`` work)
and a world-writable ``/tmp``. Pushing again under
the same tag with another marker gives a new digest: a vendor security update.

    python -m devenv.upstream 127.0.0.1:5000 upstream/busybox 1.36 v1 [--tool buildah]

prints the pushed manifest digest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imagectl.builders import BUILDERS, BuildRequest, get_builder
from imagectl.errors import ImagectlError
from imagectl.proc import run

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DOCKERFILE = 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n'
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError("busybox is not installed: apt-get install busybox-static")


def write_context(context: Path, marker: str) -> None:
    """Lay out the upstream image's build context (Dockerfile + rootfs) in `context`."""
    busybox = _busybox()
    applets = run([str(busybox), "--list"]).stdout.split()
    bin_dir = context / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(busybox, bin_dir / "busybox")
    for applet in applets:
        if applet != "busybox" and not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to("busybox")
    etc = context / "rootfs" / "etc"
    etc.mkdir()
    (etc / "upstream-marker").write_text(marker + "\n")
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    tmp = context / "rootfs" / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    # imagectl sends no empty directory to a builder (git keeps none, docs/inputs.md)
    (tmp / ".keep").write_text("")
    (context / "Dockerfile").write_text(DOCKERFILE)


def push_upstream_base(
    registry_host: str, repository: str, tag: str, marker: str, *, tool: str = "docker"
) -> str:
    """Build the busybox base with `tool` (docker or buildah) and push it.

    Args:
        registry_host: ``127.0.0.1:PORT`` of the registry.
        repository: repository path, e.g. ``upstream/busybox``.
        tag: the tag to (re)point.
        marker: content of ``/etc/upstream-marker``; a new marker makes a new digest.
        tool: ``docker`` or ``buildah`` (honours IMAGECTL_DOCKER, IMAGECTL_BUILDAH_ROOT, …).

    Returns:
        The registry manifest digest of the pushed image.
    """
    if tool not in BUILDERS:
        raise ValueError(f"tool must be one of {sorted(BUILDERS)}, not {tool!r}")
    ref = f"{registry_host}/{repository}:{tag}"
    with tempfile.TemporaryDirectory(prefix="imagectl-upstream-") as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        write_context(context, marker)
        req = BuildRequest(
            name=repository.rsplit("/", 1)[-1],
            context=context,
            dockerfile=context / "Dockerfile",
            ref=ref,
            log_path=Path(tmp) / "build.log",
            labels={"org.opencontainers.image.version": tag, "dev.imagectl.upstream": marker},
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
    args = parser.parse_args(argv)
    try:
        digest = push_upstream_base(
            args.host, args.repository, args.tag, args.marker, tool=args.tool
        )
    except (ImagectlError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
