"""Rebuild schedules: the ``rebuild:`` grammar and when an image is due (docs/design.md section 6).

Accepted forms, all in UTC: ``never``, ``daily`` (00:00), ``weekly`` (Monday
00:00), ``monthly`` (the 1st, 00:00), ``every N<m|h|d|w>``, ``daily at HH:MM``,
``<weekday> at HH:MM`` and five-field cron expressions. The calendar forms are
cron expressions underneath and are evaluated by croniter.

An image is due when an occurrence t satisfies ``last_built < t <= now``.

Pure: the clock is always passed in.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import CroniterBadDateError, CroniterError, croniter

FORMS = (
    "never, daily, weekly, monthly, every <N><m|h|d|w> (e.g. every 6h), "
    "daily at HH:MM, <weekday> at HH:MM (e.g. monday at 03:00), "
    "or a five-field cron expression (e.g. 0 3 * * 1); all times are UTC"
)
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_NAMED = {"daily": "0 0 * * *", "weekly": "0 0 * * 1", "monthly": "0 0 1 * *"}
_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_MAX_INTERVAL = timedelta(days=366 * 100)
_EVERY = re.compile(r"every (\d+) ?([mhdw])")
_AT = re.compile(r"(daily|[a-z]+day) at (\d{1,2}):(\d{2})")
# croniter's hashed (H) and random (R) fields would make plans non-deterministic.
_NONDETERMINISTIC = re.compile(r"(?<![a-z])[hr](?![a-z])", re.IGNORECASE)
_MINUTE = timedelta(minutes=1)


class ScheduleError(ValueError):
    """A ``rebuild:`` value is not in the schedule grammar."""


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Schedule(ABC):
    """A parsed ``rebuild:`` value; ``str()`` gives its canonical text."""

    text: str

    def __str__(self) -> str:
        return self.text

    @abstractmethod
    def latest_occurrence(self, now: datetime, *, since: datetime | None = None) -> datetime | None:
        """The latest occurrence t <= now, or None if there is none.

        Args:
            now: the current time (timezone-aware).
            since: the last build; only ``every`` schedules use it, as their
                occurrences are counted from the last build.
        """

    @abstractmethod
    def next_occurrence(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after``, or None if there is none.

        For ``every`` schedules ``after`` is taken as the last build, so this is
        the moment an image built at ``after`` becomes due.
        """

    def is_due(self, last_built: datetime | None, now: datetime) -> bool:
        """Whether an occurrence t satisfies ``last_built < t <= now``.

        A never-built image (``last_built`` None) is not due: it is ``new``.
        For ``every N<unit>`` the occurrences are ``last_built + k*N`` (k >= 1),
        so the image is due once ``now >= last_built + N``.

        Raises:
            ValueError: a datetime is naive.
        """
        now = _utc(now, "now")
        if last_built is None:
            return False
        last_built = _utc(last_built, "last_built")
        latest = self.latest_occurrence(now, since=last_built)
        return latest is not None and latest > last_built


@dataclass(frozen=True)
class Never(Schedule):
    """``never``: rebuilt only for another reason."""

    text: str = "never"

    def latest_occurrence(self, now: datetime, *, since: datetime | None = None) -> datetime | None:
        _utc(now, "now")
        return None

    def next_occurrence(self, after: datetime) -> datetime | None:
        _utc(after, "after")
        return None


@dataclass(frozen=True)
class Interval(Schedule):
    """``every N<unit>``: occurrences are ``last_built + k*N`` for k >= 1."""

    interval: timedelta

    def latest_occurrence(self, now: datetime, *, since: datetime | None = None) -> datetime | None:
        now = _utc(now, "now")
        if since is None:
            return None  # no last build: nothing to count from
        since = _utc(since, "since")
        periods = (now - since) // self.interval
        return since + periods * self.interval if periods >= 1 else None

    def next_occurrence(self, after: datetime) -> datetime | None:
        return _utc(after, "after") + self.interval


@dataclass(frozen=True)
class Calendar(Schedule):
    """A calendar schedule, evaluated as the five-field cron expression ``cron``."""

    cron: str

    def latest_occurrence(self, now: datetime, *, since: datetime | None = None) -> datetime | None:
        # Occurrences fall on whole minutes, so t <= now iff t <= now's minute.
        minute = _utc(now, "now").replace(second=0, microsecond=0)
        return _latest(self.cron, minute)

    def next_occurrence(self, after: datetime) -> datetime | None:
        start = _utc(after, "after")
        try:
            found: datetime = croniter(self.cron, start).get_next(datetime)
        except CroniterError:
            return None
        return found


@lru_cache(maxsize=4096)
def _latest(cron: str, minute: datetime) -> datetime | None:
    """Cached: a plan asks this for many images with the same `now`."""
    try:
        found: datetime = croniter(cron, minute + _MINUTE).get_prev(datetime)
    except CroniterError:
        return None
    return found


def _fail(text: str, why: str = "") -> ScheduleError:
    detail = f" ({why})" if why else ""
    return ScheduleError(f"invalid schedule {text!r}{detail}; expected {FORMS}")


def _parse_cron(text: str, expr: str) -> Calendar:
    if _NONDETERMINISTIC.search(expr):
        raise _fail(text, "hashed (H) and random (R) cron fields are not supported")
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError as exc:
        raise _fail(text, "the cron expression never occurs") from exc
    except CroniterError as exc:
        raise _fail(text, f"cron: {exc}") from exc
    return Calendar(text=expr, cron=expr)


@lru_cache(maxsize=1024)  # schedules are immutable; a plan parses the same few texts often
def parse_schedule(text: str) -> Schedule:
    """Parses a ``rebuild:`` value.

    Args:
        text: e.g. ``weekly``, ``every 6h``, ``monday at 03:00`` or ``0 3 * * 1``.

    Returns:
        The schedule; ``str()`` of it is the canonical spelling.

    Raises:
        ScheduleError: the text is not in the grammar; the message lists the
            accepted forms.
    """
    normal = " ".join(text.split())
    lower = normal.lower()
    if lower == "never":
        return Never()
    if lower in _NAMED:
        return Calendar(text=lower, cron=_NAMED[lower])
    if match := _EVERY.fullmatch(lower):
        count, unit = int(match.group(1)), match.group(2)
        if count < 1:
            raise _fail(text, "the interval must be at least 1")
        if count > _MAX_INTERVAL // _UNITS[unit]:
            raise _fail(text, "the interval must be at most 100 years")
        return Interval(text=f"every {count}{unit}", interval=count * _UNITS[unit])
    if match := _AT.fullmatch(lower):
        day, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
        if day != "daily" and day not in WEEKDAYS:
            raise _fail(text, f"unknown weekday {day!r}")
        if hour > 23 or minute > 59:
            raise _fail(text, f"{match.group(2)}:{match.group(3)} is not a time of day")
        dow = "*" if day == "daily" else str(WEEKDAYS.index(day))
        return Calendar(text=f"{day} at {hour:02d}:{minute:02d}", cron=f"{minute} {hour} * * {dow}")
    if len(normal.split(" ")) == 5:
        return _parse_cron(text, normal)
    raise _fail(text)
