"""How a failed image is reported: its name once, the error, and its log path once.

Errors raised deep down often carry the image name and the log path already
(``core: docker build failed (exit 1); full log: /…/core.log``); the report says
``core failed: docker build failed (exit 1)`` and ``full log: /…/core.log``, each once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LOG_NOTE = re.compile(r";?\s*full log: (?P<path>[^\n]+)")


@dataclass(frozen=True)
class Failure:
    """One failed image, ready to print."""

    image: str
    message: str  # the error without the image name or the log path
    log_path: str | None

    @property
    def headline(self) -> str:
        """`core: docker build failed (exit 1)` (for annotations and one-line reports)."""
        first = self.message.splitlines()[0] if self.message else "failed"
        return f"{self.image}: {first}"


def describe_failure(image: str, error: str, log_path: Path | None) -> Failure:
    """Strip the image name and the log note from `error`; keep the log path once."""
    message = error.strip()
    prefix = f"{image}: "
    while message.startswith(prefix):
        message = message[len(prefix) :]
    first, newline, rest = message.partition("\n")
    note = _LOG_NOTE.search(first)
    found = None
    if note is not None:
        found = note.group("path").strip()
        first = (first[: note.start()] + first[note.end() :]).rstrip()
    path = str(log_path) if log_path is not None else found
    return Failure(image, first + newline + rest, path)
