"""A cache of the parsed lock, keyed by the lock's bytes: warm plans of big fleets.

Reading a 10,000-image ``imagectl.lock`` line by line costs about 0.6 s of CPU; the
same data as one JSON document is decoded by the C parser in a tenth of that. After
the lock is parsed, its plain data is stored in ``.imagectl/cache/lock.json`` with
the sha256 of the lock's bytes; a later read uses it only when the lock's bytes
hash the same, so an edit, a checkout or a pull is always read from the lock
itself. The data is validated into a ``Lock`` as on any read. Best effort: a
missing, damaged or foreign cache is a miss, and failing to store one never fails
a run. ``IMAGECTL_NO_CACHE=1`` turns it off. JSON, not pickle: a cache file in a
repository must never be able to run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagectl.fsutil import atomic_write, state_dir
from imagectl.manifest.cache import enabled

FORMAT = 1


def cache_file(lock_path: Path) -> Path:
    """Where the cache of the lock at `lock_path` lives."""
    return lock_path.parent / ".imagectl" / "cache" / f"{lock_path.name}.json"


def load(lock_path: Path, digest: str) -> Any | None:
    """The plain data stored for the lock whose bytes hash to `digest` (hex), or None."""
    if not enabled():
        return None
    try:
        cached = json.loads(cache_file(lock_path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("format") != FORMAT:
        return None
    if cached.get("lock") != digest:
        return None
    return cached.get("data")


def store(lock_path: Path, digest: str, data: Any) -> None:
    """Keep `data`, the lock whose bytes hash to `digest` (hex), parsed (never fails)."""
    if not enabled():
        return
    text = json.dumps({"format": FORMAT, "lock": digest, "data": data}, separators=(",", ":"))
    try:
        state_dir(lock_path.parent)
        target = cache_file(lock_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text.encode("utf-8"))
    except OSError:
        pass
