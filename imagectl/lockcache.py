"""A cache of the parsed lock, keyed by the lock's bytes: warm plans of big fleets.

Reading a 10,000-image ``imagectl.lock`` line by line costs about 0.6 s of CPU; the
same data as one JSON document is decoded by the C parser in a tenth of that. After
the lock is parsed and validated, the validated lock (``model_dump(mode="json")``)
is stored in ``.imagectl/cache/imagectl.lock.json`` with the sha256 of the lock's
bytes; a later read uses it only when the lock's bytes hash the same, so an edit, a
checkout or a pull is always read from the lock itself.

The file is one header line, ``{"format":3,"lock":<sha256 of the lock>,"data":<sha256
of the rest>}``, then the data. Because the data is what a validation produced and
its hash proves it is unchanged, the reader builds the lock from it without
validating again (`lockfile`); data whose hash differs (damaged, edited) is a miss.
The records of ``images`` are stored as columns of distinct values (`compact`,
`imagectl.columnar`): a fleet's records share versions, tags, bases and build times.
Best effort: a missing, damaged or foreign cache is a miss, and failing to store one
never fails a run. ``IMAGECTL_NO_CACHE=1`` turns it off. JSON, not pickle: a cache
file in a repository must never be able to run code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from imagectl.columnar import to_columns, values_of
from imagectl.fsutil import atomic_write, state_dir
from imagectl.manifest.cache import enabled

# 2: a header line with the data's own hash, then the validated lock; 3: its images
# as columns of distinct values and rows of indexes
FORMAT = 3


def cache_file(lock_path: Path) -> Path:
    """Where the cache of the lock at `lock_path` lives."""
    return lock_path.parent / ".imagectl" / "cache" / f"{lock_path.name}.json"


def load(lock_path: Path, digest: str) -> Any | None:
    """The data stored for the lock whose bytes hash to `digest` (hex), when the data
    hashes to what its header says; else None."""
    if not enabled():
        return None
    try:
        head, _, body = cache_file(lock_path).read_bytes().partition(b"\n")
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return None
        if header.get("lock") != digest or header.get("data") != _sha(body):
            return None
        return json.loads(body)
    except (OSError, ValueError):
        return None


def store(lock_path: Path, digest: str, data: Any) -> None:
    """Keep `data`, the validated lock whose bytes hash to `digest` (hex) (never fails)."""
    if not enabled():
        return
    try:
        body = json.dumps(compact(data), separators=(",", ":")).encode("utf-8")
    except (ValueError, TypeError, KeyError):
        return
    header = json.dumps({"format": FORMAT, "lock": digest, "data": _sha(body)})
    try:
        state_dir(lock_path.parent)
        target = cache_file(lock_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, header.encode("ascii") + b"\n" + body)
    except OSError:
        pass


def compact(data: Any) -> Any:
    """The validated lock's data (`Lock.model_dump(mode="json")`) with its image records
    as ``{"fields": [...], "values": [[...] per field], "rows": {name: [index per field]}}``.

    Raises:
        ValueError: the records do not all have the same fields.
    """
    images = data["images"]
    fields = list(next(iter(images.values()), {}))
    if any(len(record) != len(fields) for record in images.values()):
        raise ValueError("records of different fields")
    columns, rows = to_columns(([r[f] for f in fields] for r in images.values()), len(fields))
    table = {"fields": fields, "values": columns, "rows": dict(zip(images, rows, strict=True))}
    return {**data, "images": table}


def expand(data: Any) -> Any:
    """`data` as `compact` had it (each record its own dict; values may be shared).

    Raises:
        ValueError, IndexError, TypeError, KeyError: not what `compact` makes.
    """
    table = data["images"]
    fields, columns = table["fields"], table["values"]
    images = {
        name: dict(zip(fields, values_of(columns, row), strict=True))
        for name, row in table["rows"].items()
    }
    return {**data, "images": images}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
