"""When and how long to wait before retrying a registry request.

Capped exponential backoff with "equal jitter" (half fixed, half random), so that
concurrent clients spread out but never retry immediately. A server's
``Retry-After`` (seconds or an HTTP date) wins over the computed backoff, up to
`RetryPolicy.max_retry_after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a request that failed transiently.

    Attributes:
        attempts: total attempts per request, the first one included (1 = no retry).
        base_delay: the backoff before the second attempt, in seconds (before jitter).
        max_delay: cap of the exponential backoff, in seconds.
        max_retry_after: cap of a server's Retry-After, in seconds.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, attempt: int, rand: float, retry_after: float | None = None) -> float:
        """Seconds to wait after the failed attempt number `attempt` (1-based).

        Args:
            attempt: how many attempts have been made so far.
            rand: a random number in [0, 1) for the jitter.
            retry_after: the server's Retry-After in seconds, if it sent one.

        Returns:
            The delay: Retry-After (capped) when given, else the jittered backoff
            ``ceiling/2 + rand*ceiling/2`` with ``ceiling = min(max_delay, base*2**(attempt-1))``.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand * ceiling / 2


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None if absent or unreadable.

    Args:
        value: the header value: delta-seconds (``"120"``) or an HTTP date.
        now: the current time, for HTTP dates (default: now, UTC).

    Returns:
        Non-negative seconds, or None.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
