"""Atomic file replacement, shared by the lock, saved plans and manifest write-back."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data`: temp file beside it, fsync, rename, directory fsync.

    A reader sees the old content or the new, never a torn file; the file's mode
    is kept (0644 for a new file); on failure no temporary file is left behind.
    `durable=False` skips both fsyncs: for a cache that checks what it reads (after a
    crash the file may be empty or torn, never half old and half new).

    Raises:
        OSError: the file cannot be written (callers turn it into their own error).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def state_dir(directory: Path) -> Path:
    """`.imagectl/` in `directory`: logs, locks and caches; it ignores itself in git."""
    path = directory / ".imagectl"
    path.mkdir(exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by imagectl: logs, locks and caches, never committed\n*\n")
    return path
