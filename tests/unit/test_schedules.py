from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagectl.domain.schedules import (
    Calendar,
    Interval,
    Never,
    Schedule,
    ScheduleError,
    parse_schedule,
)


def at(text: str) -> datetime:
    """2026-03-02T03:00 -> aware UTC datetime (2026-03-02 is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("never", "never", Never),
        ("NEVER", "never", Never),
        ("daily", "daily", Calendar),
        ("  Daily ", "daily", Calendar),
        ("weekly", "weekly", Calendar),
        ("monthly", "monthly", Calendar),
        ("every 6h", "every 6h", Interval),
        ("every 30m", "every 30m", Interval),
        ("every 2d", "every 2d", Interval),
        ("every 1w", "every 1w", Interval),
        ("every  06h", "every 6h", Interval),
        ("every 6 h", "every 6h", Interval),
        ("Every 6H", "every 6h", Interval),
        ("daily at 03:00", "daily at 03:00", Calendar),
        ("daily at 3:05", "daily at 03:05", Calendar),
        ("monday at 03:00", "monday at 03:00", Calendar),
        ("Sunday at 23:59", "sunday at 23:59", Calendar),
        ("SATURDAY  at 00:00", "saturday at 00:00", Calendar),
        ("0 3 * * 1", "0 3 * * 1", Calendar),
        ("0  3 * *   1", "0 3 * * 1", Calendar),
        ("*/15 * * * *", "*/15 * * * *", Calendar),
        ("0 0 29 2 *", "0 0 29 2 *", Calendar),
        ("0 3 * * mon", "0 3 * * mon", Calendar),
    ],
)
def test_parse_canonical(text: str, canonical: str, kind: type[Schedule]) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, kind)
    assert str(schedule) == canonical
    assert parse_schedule(str(schedule)) == schedule


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("daily", "0 0 * * *"),
        ("weekly", "0 0 * * 1"),
        ("monthly", "0 0 1 * *"),
        ("daily at 03:30", "30 3 * * *"),
        ("monday at 03:00", "0 3 * * 1"),
        ("sunday at 12:00", "0 12 * * 0"),
        ("saturday at 01:02", "2 1 * * 6"),
    ],
)
def test_named_forms_are_cron(text: str, cron: str) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, Calendar)
    assert schedule.cron == cron


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("every 30m", timedelta(minutes=30)),
        ("every 6h", timedelta(hours=6)),
        ("every 2d", timedelta(days=2)),
        ("every 1w", timedelta(weeks=1)),
    ],
)
def test_interval_lengths(text: str, interval: timedelta) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, Interval)
    assert schedule.interval == interval


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", ""),
        ("sometimes", ""),
        ("hourly", ""),
        ("every", ""),
        ("every h", ""),
        ("every 6", ""),
        ("every 6s", ""),
        ("every 6y", ""),
        ("every -1h", ""),
        ("every 0h", "at least 1"),
        ("every 99999999999w", "at most"),
        ("daily at 24:00", "not a time of day"),
        ("daily at 03:60", "not a time of day"),
        ("daily at 3", ""),
        ("daily at 03:0", ""),
        ("mon at 03:00", ""),
        ("funday at 03:00", "unknown weekday"),
        ("monday", ""),
        ("0 3 * *", ""),
        ("0 3 * * * *", ""),
        ("0 0 3 * * * 2026", ""),
        ("@daily", ""),
        ("0 25 * * *", "cron"),
        ("60 3 * * *", "cron"),
        ("0 3 * * 8", "cron"),
        ("a b c d e", "cron"),
        ("0 0 30 2 *", "never occurs"),
        ("0 0 31 4 *", "never occurs"),
        ("H 3 * * *", "hashed"),
        ("R 3 * * *", "random"),
    ],
)
def test_parse_refuses(text: str, detail: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert repr(text) in message
    assert detail in message
    for form in ("never", "daily", "weekly", "monthly", "every", "at HH:MM", "cron", "UTC"):
        assert form in message


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("daily", "2026-03-02T10:00", "2026-03-02T00:00"),
        ("daily", "2026-03-02T00:00", "2026-03-02T00:00"),
        ("daily", "2026-03-01T23:59:59.999999", "2026-03-01T00:00"),
        ("daily at 03:00", "2026-03-02T02:59:59", "2026-03-01T03:00"),
        ("daily at 03:00", "2026-03-02T03:00:00", "2026-03-02T03:00"),
        ("daily at 03:00", "2026-03-02T03:00:30", "2026-03-02T03:00"),
        # weekly: Monday 00:00 (2026-03-02 is a Monday)
        ("weekly", "2026-03-02T00:00", "2026-03-02T00:00"),
        ("weekly", "2026-03-01T23:59", "2026-02-23T00:00"),
        ("weekly", "2026-03-08T12:00", "2026-03-02T00:00"),
        # monthly: month and year boundaries
        ("monthly", "2026-03-31T23:59", "2026-03-01T00:00"),
        ("monthly", "2026-03-01T00:00", "2026-03-01T00:00"),
        ("monthly", "2026-01-15T00:00", "2026-01-01T00:00"),
        ("monthly", "2025-12-31T23:59", "2025-12-01T00:00"),
        ("monday at 03:00", "2026-03-02T02:00", "2026-02-23T03:00"),
        ("sunday at 12:00", "2026-03-02T02:00", "2026-03-01T12:00"),
        ("0 3 * * 1", "2026-03-09T03:00", "2026-03-09T03:00"),
        # leap day: only every four years
        ("0 0 29 2 *", "2026-03-01T00:00", "2024-02-29T00:00"),
        ("0 0 29 2 *", "2028-02-29T00:00", "2028-02-29T00:00"),
        ("0 0 29 2 *", "2028-02-28T23:59", "2024-02-29T00:00"),
        ("0 0 L * *", "2024-03-01T00:00", "2024-02-29T00:00"),
        ("0 0 L * *", "2026-03-01T00:00", "2026-02-28T00:00"),
        ("*/15 * * * *", "2026-03-02T10:44:59", "2026-03-02T10:30"),
    ],
)
def test_latest_occurrence(text: str, now: str, expected: str) -> None:
    assert parse_schedule(text).latest_occurrence(at(now)) == at(expected)


def test_latest_occurrence_never() -> None:
    assert Never().latest_occurrence(at("2026-03-02T00:00")) is None
    assert Never().next_occurrence(at("2026-03-02T00:00")) is None


def test_latest_occurrence_converts_other_zones_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    now = datetime(2026, 3, 2, 1, 0, tzinfo=plus2)  # 2026-03-01T23:00Z
    result = parse_schedule("daily").latest_occurrence(now)
    assert result == at("2026-03-01T00:00")
    assert result is not None and result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "since", "now", "expected"),
    [
        ("every 6h", None, "2026-03-02T10:00", None),
        ("every 6h", "2026-03-02T00:00", "2026-03-02T05:59", None),
        ("every 6h", "2026-03-02T00:00", "2026-03-02T06:00", "2026-03-02T06:00"),
        ("every 6h", "2026-03-02T00:00", "2026-03-02T13:00", "2026-03-02T12:00"),
        ("every 2d", "2026-02-27T10:00", "2026-03-03T09:00", "2026-03-01T10:00"),
        ("every 1w", "2026-03-02T10:00", "2026-03-01T10:00", None),  # since after now
    ],
)
def test_interval_latest_occurrence(
    text: str, since: str | None, now: str, expected: str | None
) -> None:
    result = parse_schedule(text).latest_occurrence(at(now), since=at(since) if since else None)
    assert result == (at(expected) if expected else None)


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("daily", "2026-03-02T00:00", "2026-03-03T00:00"),
        ("daily", "2026-03-01T23:59:59", "2026-03-02T00:00"),
        ("daily at 03:00", "2026-03-02T02:00", "2026-03-02T03:00"),
        ("weekly", "2026-03-02T00:00", "2026-03-09T00:00"),
        ("weekly", "2026-03-01T12:00", "2026-03-02T00:00"),
        ("monthly", "2026-01-31T12:00", "2026-02-01T00:00"),
        ("monthly", "2026-12-15T00:00", "2027-01-01T00:00"),
        ("friday at 18:30", "2026-03-02T00:00", "2026-03-06T18:30"),
        ("0 0 29 2 *", "2026-01-01T00:00", "2028-02-29T00:00"),
        ("every 6h", "2026-03-02T01:15", "2026-03-02T07:15"),
        ("every 1w", "2026-03-02T01:15", "2026-03-09T01:15"),
        ("every 30m", "2026-03-02T23:45", "2026-03-03T00:15"),
    ],
)
def test_next_occurrence(text: str, after: str, expected: str) -> None:
    assert parse_schedule(text).next_occurrence(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("text", "last_built", "now", "due"),
    [
        # never-built images are `new`, not due
        ("daily", None, "2026-03-02T10:00", False),
        ("every 6h", None, "2026-03-02T10:00", False),
        ("never", None, "2026-03-02T10:00", False),
        ("never", "2020-01-01T00:00", "2026-03-02T10:00", False),
        # daily
        ("daily", "2026-03-01T12:00", "2026-03-01T23:59", False),
        ("daily", "2026-03-01T12:00", "2026-03-02T00:00", True),
        ("daily", "2026-03-02T00:00", "2026-03-02T10:00", False),  # built at the occurrence
        ("daily", "2026-03-01T23:59:59.999999", "2026-03-02T00:00", True),
        ("daily", "2026-02-20T00:00", "2026-03-02T10:00", True),
        # weekly: Monday 00:00 is due exactly when now equals it
        ("weekly", "2026-03-01T10:00", "2026-03-02T00:00", True),
        ("weekly", "2026-03-01T10:00", "2026-03-01T23:59:59.999999", False),
        ("weekly", "2026-03-02T00:00", "2026-03-08T23:59", False),
        ("weekly", "2026-03-02T00:00", "2026-03-09T00:00", True),
        ("weekly", "2026-03-02T00:00:01", "2026-03-02T06:00", False),
        # monthly across month ends and a leap February
        ("monthly", "2026-01-31T12:00", "2026-02-01T00:00", True),
        ("monthly", "2026-02-01T00:00", "2026-02-28T23:59", False),
        ("monthly", "2024-02-29T12:00", "2024-03-01T00:00", True),
        ("monthly", "2025-12-31T23:00", "2026-01-01T00:00", True),
        ("0 0 29 2 *", "2024-02-29T00:00", "2027-12-31T00:00", False),
        ("0 0 29 2 *", "2024-02-29T00:00", "2028-02-29T00:00", True),
        # daily at / weekday at
        ("daily at 03:00", "2026-03-01T03:00", "2026-03-02T02:59", False),
        ("daily at 03:00", "2026-03-01T03:00", "2026-03-02T03:00", True),
        ("monday at 03:00", "2026-03-02T02:00", "2026-03-02T03:00", True),
        ("monday at 03:00", "2026-03-02T03:00", "2026-03-08T23:00", False),
        ("0 3 * * 1", "2026-03-02T03:00", "2026-03-09T03:00:00.5", True),
        # every N: occurrences are last_built + k*N
        ("every 6h", "2026-03-02T01:15", "2026-03-02T07:14:59", False),
        ("every 6h", "2026-03-02T01:15", "2026-03-02T07:15", True),
        ("every 6h", "2026-03-02T01:15", "2026-03-05T00:00", True),
        ("every 30m", "2026-03-02T23:45", "2026-03-03T00:15", True),
        ("every 2d", "2026-02-27T10:00", "2026-03-01T09:59", False),
        ("every 2d", "2026-02-27T10:00", "2026-03-01T10:00", True),
        ("every 1w", "2026-03-02T10:00", "2026-03-09T09:59", False),
        ("every 1w", "2026-03-02T10:00", "2026-03-09T10:00", True),
        # a last build in the future (clock skew) is never due
        ("daily", "2026-03-05T00:00", "2026-03-02T00:00", False),
        ("every 1h", "2026-03-05T00:00", "2026-03-02T00:00", False),
    ],
)
def test_is_due(text: str, last_built: str | None, now: str, due: bool) -> None:
    schedule = parse_schedule(text)
    assert schedule.is_due(at(last_built) if last_built else None, at(now)) is due


def test_is_due_agrees_with_next_occurrence() -> None:
    last = at("2026-01-31T17:45")
    for text in ("daily", "weekly", "monthly", "every 6h", "friday at 09:00", "*/20 * * * *"):
        schedule = parse_schedule(text)
        first = schedule.next_occurrence(last)
        assert first is not None
        assert schedule.is_due(last, first) is True
        assert schedule.is_due(last, first - timedelta(microseconds=1)) is False


@pytest.mark.parametrize("text", ["never", "daily", "every 6h", "0 3 * * 1"])
def test_naive_datetimes_are_refused(text: str) -> None:
    schedule = parse_schedule(text)
    naive = datetime(2026, 3, 2)
    aware = at("2026-03-02T00:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.is_due(aware, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.is_due(naive, aware)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.is_due(None, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.latest_occurrence(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_occurrence(naive)


def test_schedules_are_hashable_values() -> None:
    assert parse_schedule("every 6h") == parse_schedule("every 6 h")
    assert parse_schedule("daily") != parse_schedule("daily at 00:00")
    assert len({parse_schedule("weekly"), parse_schedule("Weekly")}) == 1
