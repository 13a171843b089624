"""The planner's schedule check gives `Schedule.is_due`'s answer, found once per schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagectl.domain.schedules import parse_schedule
from imagectl.plan.model import Observed, PlanOptions
from imagectl.plan.plan import _Planner
from tests.unit.test_plan import image, manifest

NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
SCHEDULES = ["weekly", "daily", "never", "every 3d", "every 12h", "0 12 * * 1", "monthly"]
BUILDS = [
    NOW - timedelta(minutes=1),
    NOW - timedelta(hours=13),
    NOW - timedelta(days=2, hours=23),
    NOW - timedelta(days=8),
    NOW - timedelta(days=40),
    datetime(2026, 11, 30, 11, 0, tzinfo=timezone(timedelta(hours=-3))),  # not UTC
    NOW,
]


def planner() -> _Planner:
    world = Observed(base_digests={}, built={}, inputs={})
    return _Planner(manifest(image("a", "debian", "1.0")), world, NOW, PlanOptions())


@pytest.mark.parametrize("rebuild", SCHEDULES)
def test_due_is_is_due(rebuild: str) -> None:
    plan = planner()
    for built_at in BUILDS * 2:  # the second round answers from the memo
        assert plan.due(rebuild, built_at) == parse_schedule(rebuild).is_due(built_at, NOW), (
            rebuild,
            built_at,
        )


def test_a_naive_build_time_is_still_an_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        planner().due("weekly", datetime(2026, 11, 1, 12, 0))
