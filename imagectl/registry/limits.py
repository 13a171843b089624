"""How much a registry may make imagectl read, wait for and follow.

A registry imagectl does not control can send endless bodies, trickle bytes or
chain pagination links forever. Every response body is streamed against the
limit of its kind and dropped as soon as the limit is passed; every request has
an overall deadline (not only a per-read timeout); a planning phase has a
deadline of its own; a listing follows at most `max_pages` pages. Deadlines and
the page cap can be set from the environment (`from_env`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from imagectl.errors import RegistryError, UsageError

KIB = 1024
MIB = 1024 * KIB


class Body(Enum):
    """What a response body is, which decides how large it may be."""

    MANIFEST = "manifest"  # manifests and indexes
    CONFIG = "config"  # image config blobs
    LISTING = "listing"  # one page of tags/list or _catalog
    TOKEN = "token"  # a token server's reply
    ERROR = "error"  # any reply imagectl only reads for its message (cut, never refused)
    NONE = "none"  # a reply whose body is not used (HEAD, PUT, DELETE)


BODY_LIMITS: Mapping[Body, int] = MappingProxyType(
    {
        Body.MANIFEST: 4 * MIB,  # the distribution spec's and docker's manifest limit
        Body.CONFIG: 8 * MIB,
        Body.LISTING: 4 * MIB,
        Body.TOKEN: 64 * KIB,
        Body.ERROR: 64 * KIB,
        Body.NONE: 64 * KIB,
    }
)

# Environment variable -> Limits field.
LIMITS_ENV = {
    "IMAGECTL_REQUEST_DEADLINE": "request_deadline",
    "IMAGECTL_PHASE_DEADLINE": "phase_deadline",
    "IMAGECTL_MAX_PAGES": "max_pages",
}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one registry can cost.

    Attributes:
        request_deadline: seconds one request may take in all (connect, headers, body),
            each retry attempt counted on its own.
        phase_deadline: seconds all registry requests of one phase (planning) may take.
        max_pages: pages one tag or catalog listing may have.
        bodies: the body limit of each kind, in bytes.
    """

    request_deadline: float = 60.0
    phase_deadline: float = 600.0
    max_pages: int = 200
    bodies: Mapping[Body, int] = field(default_factory=lambda: BODY_LIMITS)

    def __post_init__(self) -> None:
        if not self.request_deadline > 0 or not self.phase_deadline > 0:
            raise ValueError("deadlines must be positive numbers of seconds")
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")

    def body(self, kind: Body) -> int:
        """The byte limit of a body of `kind`."""
        return self.bodies[kind]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults, with `IMAGECTL_REQUEST_DEADLINE`, `IMAGECTL_PHASE_DEADLINE`
        (seconds) and `IMAGECTL_MAX_PAGES` (a whole number) applied.

        Raises:
            UsageError: a value is not a positive number (naming the variable).
        """
        values = env_numbers(env, LIMITS_ENV, whole="max_pages", positive=True)
        return cls(**values)  # type: ignore[arg-type]


def env_numbers(
    env: Mapping[str, str] | None, names: Mapping[str, str], *, whole: str, positive: bool
) -> dict[str, float | int]:
    """The numeric settings set in `env` (default: the process environment), by field.

    Args:
        names: environment variable -> field name.
        whole: the field read as a whole number; the others are seconds.
        positive: values must be above 0 (else any finite number).

    Raises:
        UsageError: a value is not such a number (naming the variable).
    """
    env = os.environ if env is None else env
    values: dict[str, float | int] = {}
    for name, attr in names.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value: float | int = int(raw) if attr == whole else float(raw)
            if not math.isfinite(value) or (positive and value <= 0):
                raise ValueError(raw)
        except ValueError:
            kind = "a whole number" if attr == whole else "a number of seconds"
            above = " above 0" if positive else ""
            raise UsageError(f"{name}={raw!r}: expected {kind}{above}") from None
        values[attr] = value
    return values


def size(n: int) -> str:
    """`n` bytes for a message: ``4 MiB``, ``64 KiB`` or ``512 bytes``."""
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


class RegistryLimitError(RegistryError):
    """A registry passed a limit or broke a rule meant to contain a hostile registry
    (body size, deadline, page cap, another origin, text without its grammar)."""
