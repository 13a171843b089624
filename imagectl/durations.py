"""Durations as users write them: ``90s``, ``45m``, ``1h30m``, ``2h`` (pure)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DURATION_HINT = "write whole numbers with units h, m and s, e.g. 90s, 45m or 1h30m"


def parse_duration(text: str) -> int | None:
    """Seconds in a duration such as ``1h30m``; None when `text` is not a duration.

    Units come in the order h, m, s, each at most once; spaces are not allowed.
    """
    match = _DURATION.fullmatch(text)
    if match is None or not text:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """The shortest ``1h30m``-style text for a number of seconds (fractions rounded up)."""
    whole = max(0, -int(-seconds // 1))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"
