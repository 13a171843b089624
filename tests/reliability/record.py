"""Machine-readable results of the reliability tests, for `docs/reliability.md`.

When ``IMAGECTL_RELIABILITY_RESULTS`` names a file, every case appends one JSON line::

    {"area": "faults|kills|signals|races|bad-input|security", "case": str,
     "injected": str, "observed": str, "passed": bool, "count": int}

Unset, nothing is written. `record` writes one line; `result` records a case
around a block: ``passed`` is whether the block finished without an exception.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

RESULTS_ENV = "IMAGECTL_RELIABILITY_RESULTS"
AREAS = frozenset({"faults", "kills", "signals", "races", "bad-input", "security", "hostile"})


def record(area: str, case: str, injected: str, observed: str, passed: bool, count: int) -> None:
    """Append one result line to ``$IMAGECTL_RELIABILITY_RESULTS`` (no-op when unset)."""
    if area not in AREAS:
        raise ValueError(f"area must be one of {sorted(AREAS)}, not {area!r}")
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    line = {
        "area": area,
        "case": case,
        "injected": injected,
        "observed": observed,
        "passed": bool(passed),
        "count": int(count),
    }
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one write of one line on an O_APPEND descriptor: concurrent writers never interleave
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


@dataclass
class Result:
    """A case being observed; fill in `observed` and `count` as the test learns them."""

    area: str
    case: str
    injected: str
    observed: str = ""
    count: int = 0


@contextmanager
def result(area: str, case: str, injected: str) -> Iterator[Result]:
    """Record the case when the block ends: passed unless it raised (a skip records nothing)."""
    current = Result(area, case, injected)
    try:
        yield current
    except pytest.skip.Exception:
        raise
    except BaseException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        observed = f"{current.observed}; " if current.observed else ""
        record(area, case, injected, f"{observed}FAILED: {first}", False, current.count)
        raise
    record(area, case, injected, current.observed, True, current.count)
