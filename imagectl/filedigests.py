"""A cache of file content digests between plans, so a warm plan re-reads only changed files.

The inputs digest never includes a timestamp: it is made of paths, modes and
content (`imagectl.inputs`). This cache only saves reading a file whose content
digest is already known. An entry is used only when the file's stat still matches
what it was when the file was read: size, ``mtime_ns``, ``ctime_ns``, inode and
device. Anything that rewrites, replaces, renames over, truncates or ``chmod``s a
file changes one of those, so its digest is computed again.

A write within the filesystem's timestamp granularity of the read could leave the
stat unchanged, so a file modified less than `SETTLE_NS` before it was read is
never stored: it is read again on every plan until it has been left alone for
that long (git's "racily clean" entries, handled the same way).

Stored in ``.imagectl/cache/files.json`` beside the manifest (never committed),
written only when something changed, holding exactly the files the last plan
hashed. JSON, not pickle: a cache file must never be able to run code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from imagectl.fsutil import atomic_write, state_dir

FORMAT = 1
SETTLE_NS = 2_000_000_000  # coarsest common mtime granularity (FAT: 2 s)

StatKey = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    """What must be unchanged for a stored digest to be used."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def cache_path(root: Path) -> Path:
    """Where the file digests of the manifest in directory `root` are kept."""
    return root / ".imagectl" / "cache" / "files.json"


class FileDigests:
    """Digests of file contents by path, trusted only while the file's stat is unchanged.

    Attributes:
        root: the directory whose ``.imagectl/cache`` keeps them (None: in memory only).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._stored: dict[str, object] = {}  # as read: checked when used
        self._used: dict[str, tuple[StatKey, str]] = {}
        self._changed = False
        if root is not None:
            self._stored = _read(cache_path(root))

    def get(self, path: str, st: os.stat_result) -> str | None:
        """The stored digest of `path`, or None unless its stat is what it was when read."""
        entry = self._stored.get(path)
        key = stat_key(st)
        if not (isinstance(entry, list) and len(entry) == 6 and tuple(entry[:5]) == key):
            return None
        digest = entry[5]
        if not isinstance(digest, str):
            return None
        self._used[path] = (key, digest)
        return digest

    def put(self, path: str, st: os.stat_result, digest: str, since_ns: int) -> None:
        """Remember that `path`, whose stat was `st`, hashed to `digest`.

        `since_ns` is the clock (`now_ns`) taken before `st` was: a file modified less
        than `SETTLE_NS` before it is not kept, as a later write could keep its stat.
        """
        if since_ns - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLE_NS:
            self._changed = True  # not stored: the next plan reads it again
            return
        self._used[path] = (stat_key(st), digest)
        self._changed = True

    def save(self) -> None:
        """Write the digests used by this run (best effort), when they differ from the stored."""
        if self.root is None or not (self._changed or len(self._used) != len(self._stored)):
            return
        data = {
            "format": FORMAT,
            "files": {p: [*key, digest] for p, (key, digest) in sorted(self._used.items())},
        }
        try:
            state_dir(self.root)
            target = cache_path(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, json.dumps(data, separators=(",", ":")).encode())
        except OSError:
            pass


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def now_ns() -> int:
    """The wall clock in nanoseconds, the clock file timestamps are taken from."""
    return time.time_ns()


__all__ = ["SETTLE_NS", "FileDigests", "cache_path", "now_ns", "stat_key"]
