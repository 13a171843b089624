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

A whole context's tree digest is kept the same way (`FileDigests.tree`), with the
stamp that proves its walk would give the same entries: the stat of every directory
walked (an entry added, removed or renamed changes its directory's mtime), of the
ignore file and of the Dockerfile's directory (where an ignore file may appear), and
the stat key of every entry hashed. Checking it costs one stat per path and skips
listing directories and matching ignore rules; anything else is a walk.

Stored in ``.imagectl/cache/files.json`` beside the manifest (never committed),
written only when something changed, holding exactly the files the last plan
hashed. JSON, not pickle: a cache file must never be able to run code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from imagectl.fsutil import atomic_write, state_dir

FORMAT = 1
SETTLE_NS = 2_000_000_000  # coarsest common mtime granularity (FAT: 2 s)

StatKey = tuple[int, int, int, int, int]
Stamp = tuple[str, bool, StatKey]  # a path, whether its stat follows symlinks, its stat key


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
        self._stored_trees: dict[str, object] = {}
        self._used_trees: dict[str, object] = {}
        self._stored_notes: dict[str, object] = {}
        self._used_notes: dict[str, object] = {}
        self._changed = False
        if root is not None:
            self._stored, self._stored_trees, self._stored_notes = _read(cache_path(root))

    def note(self, digest: str) -> tuple[bool, object]:
        """(whether something is noted, what) for the content whose sha256 is `digest`
        (what a reader found in it, e.g. a Dockerfile's ``# syntax=``): keyed by
        content, so it holds for any file with these bytes."""
        if digest not in self._stored_notes:
            return False, None
        value = self._used_notes[digest] = self._stored_notes[digest]
        return True, value

    def put_note(self, digest: str, value: object) -> None:
        """Keep `value`, found in the content whose sha256 is `digest` (JSON-able)."""
        self._used_notes[digest] = value
        self._changed = True

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

    def tree(self, key: str) -> str | None:
        """The stored tree digest under `key`, or None unless every stat of its stamp and
        of its files is what it was when the tree was walked (the files count as used)."""
        entry: Any = self._stored_trees.get(key)
        try:
            digest, stamps, files = entry
            for path, follow, *known in stamps:
                if tuple(known) != stat_key(os.stat(path) if follow else os.lstat(path)):
                    return None
            used: list[tuple[str, StatKey, str]] = []
            for path in files:
                stored: Any = self._stored[path]
                found = stat_key(os.lstat(path))
                if tuple(stored[:5]) != found or not isinstance(stored[5], str):
                    return None
                used.append((path, found, stored[5]))
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            return None
        if not isinstance(digest, str):
            return None
        for path, found, file_digest in used:
            self._used[path] = (found, file_digest)
        self._used_trees[key] = entry
        return digest

    def put_tree(
        self, key: str, digest: str, stamps: list[Stamp], files: list[str], since_ns: int
    ) -> None:
        """Remember the tree digest of a walk whose directories (and ignore file) had the
        stats of `stamps` and whose hashed entries are `files`, the clock before any of
        them was taken being `since_ns`. Not kept when one of them was modified less than
        `SETTLE_NS` before, or a file's digest was not kept (see `put`)."""
        self._changed = True
        if any(since_ns - max(k[1], k[2]) < SETTLE_NS for _, _, k in stamps):
            return
        if any(path not in self._used for path in files):
            return
        self._used_trees[key] = [digest, [[p, f, *k] for p, f, k in stamps], files]

    def save(self) -> None:
        """Write the digests used by this run (best effort), when they differ from the stored."""
        if self.root is None or not (
            self._changed
            or len(self._used) != len(self._stored)
            or len(self._used_trees) != len(self._stored_trees)
            or len(self._used_notes) != len(self._stored_notes)
        ):
            return
        data = {
            "format": FORMAT,
            "files": {p: [*key, digest] for p, (key, digest) in sorted(self._used.items())},
            "trees": dict(sorted(self._used_trees.items())),
            "notes": dict(sorted(self._used_notes.items())),
        }
        try:
            state_dir(self.root)
            target = cache_path(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, json.dumps(data, separators=(",", ":")).encode())
        except OSError:
            pass


def _read(path: Path) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """(files, trees, notes) as stored; empty when damaged or of another format."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}, {}, {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}, {}, {}
    files, trees, notes = data.get("files"), data.get("trees"), data.get("notes")
    if not isinstance(files, dict):
        return {}, {}, {}
    return (
        files,
        trees if isinstance(trees, dict) else {},
        notes if isinstance(notes, dict) else {},
    )


def now_ns() -> int:
    """The wall clock in nanoseconds, the clock file timestamps are taken from."""
    return time.time_ns()


__all__ = ["SETTLE_NS", "FileDigests", "Stamp", "cache_path", "now_ns", "stat_key"]
