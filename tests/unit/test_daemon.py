"""The daemon loop on a fake clock: no real sleeping, no registry, no builder."""

from __future__ import annotations

import datetime as real_datetime
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schedule
from rich.console import Console

from imagectl.daemon import (
    EXIT_INTERRUPTED,
    Daemon,
    Reconcile,
    TickResult,
    apply_reconcile,
    daemon_command,
    parse_interval,
)
from imagectl.errors import RegistryError, UsageError

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock that only moves when slept on (or advanced by a fake tick)."""

    now: datetime = T0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_daemon(
    reconcile: Reconcile, clock: FakeClock, *, interval: str = "15m"
) -> tuple[Daemon, list[str]]:
    lines: list[str] = []
    daemon = Daemon(
        reconcile,
        interval=parse_interval(interval),
        clock=clock,
        sleep=clock.sleep,
        log=lines.append,
        poll=60.0,
    )
    return daemon, lines


def scripted(
    clock: FakeClock,
    steps: list[Callable[[], TickResult]],
    *,
    duration: float = 30.0,
) -> tuple[Reconcile, list[datetime], list[Daemon]]:
    """A reconcile that runs `steps` in turn, each taking `duration`; stops the daemon after."""
    calls: list[datetime] = []
    holder: list[Daemon] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        calls.append(now)
        clock.advance(duration)
        step = steps[len(calls) - 1]
        if len(calls) == len(steps):
            holder[0].request_stop()
        return step()

    return reconcile, calls, holder


def raise_(exc: Exception) -> Callable[[], TickResult]:
    def step() -> TickResult:
        raise exc

    return step


def test_a_failed_tick_does_not_stop_the_loop() -> None:
    clock = FakeClock()
    reconcile, calls, holder = scripted(
        clock,
        [
            raise_(RuntimeError("boom")),
            raise_(RegistryError("registry localhost:5000 refused: 503")),
            lambda: TickResult(code=1, applied=2),
            lambda: TickResult(applied=2),
        ],
    )
    daemon, lines = make_daemon(reconcile, clock)
    holder.append(daemon)

    assert daemon.run() == 0

    assert len(calls) == 4
    assert "tick: failed: RuntimeError: boom in 30.0s" in lines[0]
    assert "tick: failed: registry localhost:5000 refused: 503" in lines[1]
    assert "tick: failed: applying 2 images exited with code 1" in lines[2]
    assert "tick: applied 2 images in 30.0s; stopping: no next tick" in lines[3]


def test_ticks_happen_at_the_interval_on_the_fake_clock() -> None:
    clock = FakeClock()
    steps: list[Callable[[], TickResult]] = [TickResult] * 4
    reconcile, calls, holder = scripted(clock, steps, duration=30.0)
    daemon, lines = make_daemon(reconcile, clock)
    holder.append(daemon)

    assert daemon.run() == 0

    # The next tick starts one interval after the previous one ended.
    step = timedelta(minutes=15, seconds=30)
    assert calls == [T0, T0 + step, T0 + 2 * step, T0 + 3 * step]
    assert sum(clock.sleeps) == pytest.approx(3 * 15 * 60)
    assert max(clock.sleeps) <= 60.0  # slept in poll-sized slices
    assert lines[0] == (
        "2026-03-02T12:00:00Z tick: nothing to do in 30.0s; next tick 2026-03-02T12:15:30Z"
    )
    assert lines[1].startswith("2026-03-02T12:15:30Z tick: nothing to do")
    assert len(lines) == 4


def test_interval_in_seconds_and_days() -> None:
    clock = FakeClock()
    reconcile, calls, holder = scripted(clock, [TickResult] * 3, duration=0.0)
    daemon, _ = make_daemon(reconcile, clock, interval="2d")
    holder.append(daemon)
    daemon.run()
    assert calls == [T0, T0 + timedelta(days=2), T0 + timedelta(days=4)]

    clock = FakeClock()
    reconcile, calls, holder = scripted(clock, [TickResult] * 3, duration=0.0)
    daemon, _ = make_daemon(reconcile, clock, interval="30s")
    holder.append(daemon)
    daemon.run()
    assert calls == [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)]


def test_a_stop_request_ends_the_loop_after_the_tick_in_flight() -> None:
    clock = FakeClock()
    finished: list[bool] = []
    holder: list[Daemon] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        holder[0].request_stop()  # as the signal handler does, mid-tick
        assert stopping()
        clock.advance(120)
        finished.append(True)
        return TickResult(applied=3)

    daemon, lines = make_daemon(reconcile, clock)
    holder.append(daemon)

    assert daemon.run() == 0
    assert finished == [True]
    assert clock.sleeps == []
    assert lines == [
        "2026-03-02T12:00:00Z tick: applied 3 images in 120.0s; stopping: no next tick"
    ]


def test_sigterm_mid_tick_finishes_the_tick_then_exits_0() -> None:
    clock = FakeClock()
    ticks: list[datetime] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        ticks.append(now)
        signal.raise_signal(signal.SIGTERM)
        assert stopping()
        return TickResult(applied=1)

    daemon, lines = make_daemon(reconcile, clock)
    before = signal.getsignal(signal.SIGTERM)

    assert daemon.run() == 0
    assert len(ticks) == 1
    assert "applied 1 image in" in lines[0]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_caught_by_the_apply_inside_still_ends_the_loop() -> None:
    """Apply installs its own handler (to finish images in flight); the daemon still hears it."""
    clock = FakeClock()
    ticks: list[datetime] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        ticks.append(now)
        caught: list[int] = []
        outer = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, outer)
        assert caught == [signal.SIGTERM]
        assert not stopping()  # the daemon's handler did not run...
        return TickResult(applied=1)  # ...and the apply had nothing left to cancel

    daemon, lines = make_daemon(reconcile, clock)
    assert daemon.run() == 0
    assert len(ticks) == 1
    assert lines[0].endswith("stopping: no next tick")


def test_a_stop_during_the_idle_wait_ends_the_loop_without_another_tick() -> None:
    clock = FakeClock()
    ticks: list[datetime] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        ticks.append(now)
        return TickResult()

    holder: list[Daemon] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            holder[0].request_stop()

    daemon = Daemon(
        reconcile, interval=timedelta(minutes=15), clock=clock, sleep=sleep, log=lambda _: None
    )
    holder.append(daemon)

    assert daemon.run() == 0
    assert ticks == [T0]
    assert clock.sleeps == [1.0, 1.0, 1.0]  # the default poll: a stop is seen within a second


def test_an_interrupted_apply_ends_the_loop() -> None:
    clock = FakeClock()
    ticks: list[datetime] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        ticks.append(now)
        return TickResult(code=EXIT_INTERRUPTED, applied=4)

    daemon, lines = make_daemon(reconcile, clock)
    assert daemon.run() == 0
    assert len(ticks) == 1
    assert "interrupted: stopped applying 4 images after the ones in flight" in lines[0]


@pytest.mark.parametrize(
    ("step", "code", "outcome"),
    [
        (TickResult, 0, "nothing to do"),
        (lambda: TickResult(applied=1), 0, "applied 1 image"),
        (lambda: TickResult(code=1, applied=2), 1, "failed: applying 2 images exited with code 1"),
        (lambda: TickResult(code=EXIT_INTERRUPTED, applied=2), EXIT_INTERRUPTED, "interrupted"),
        (raise_(RegistryError("unauthorized")), 1, "failed: unauthorized"),
        (raise_(UsageError("bad flag")), 2, "failed: bad flag"),
        (raise_(ValueError("x\ny")), 1, "failed: ValueError: x; y"),
    ],
)
def test_once_returns_the_tick_code(
    step: Callable[[], TickResult], code: int, outcome: str
) -> None:
    clock = FakeClock()

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        clock.advance(5)
        return step()

    daemon, lines = make_daemon(reconcile, clock)
    assert daemon.run_once() == code
    assert clock.sleeps == []
    assert len(lines) == 1
    assert lines[0].startswith(f"2026-03-02T12:00:00Z tick: {outcome}")
    assert lines[0].endswith("in 5.0s; --once: no next tick")


def test_schedule_reads_the_daemon_clock_only_while_running() -> None:
    clock = FakeClock(now=datetime(2001, 1, 1, tzinfo=UTC))
    seen: list[Any] = []

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        seen.append(vars(schedule)["datetime"].datetime.now())
        holder[0].request_stop()
        return TickResult()

    holder: list[Daemon] = []
    daemon, _ = make_daemon(reconcile, clock)
    holder.append(daemon)
    daemon.run()
    assert seen == [datetime(2001, 1, 1)]
    assert vars(schedule)["datetime"] is real_datetime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        (" 90m ", timedelta(minutes=90)),
        ("1 h", timedelta(hours=1)),
    ],
)
def test_parse_interval(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "1.5h", "-5m", "15 minutes", "1h30m", "0s"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--interval"):
        parse_interval(text)


def test_daemon_command_rejects_a_bad_interval_before_doing_anything(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"e\.g\. 30s, 15m, 1h, 2d"):
        daemon_command(
            tmp_path / "imagectl.yaml",
            interval="soon",
            once=True,
            jobs=1,
            git_push=False,
            console=Console(),
        )


@dataclass
class FakePlan:
    actions: tuple[str, ...]


class FakeClient:
    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Stub the load/plan/apply edges that apply_reconcile calls (outside any git repo)."""
    from imagectl import service

    state: dict[str, Any] = {"actions": (), "applied": [], "settled": [], "planned": 0}

    def plan(manifest: object, client: object, **kw: Any) -> service.Planned:
        state["now"] = kw["now"]
        state["planned"] += 1
        return service.Planned(FakePlan(state["actions"]))  # type: ignore[arg-type]

    def run_apply(manifest: object, client: object, settings: Any, **kw: Any) -> Any:
        state["applied"].append({"settings": settings, **kw})
        return service.Applied(kw["first"].plan, FakeResult(int(state.get("code", 0))))  # type: ignore[arg-type]

    def commit_pending(manifest: object, options: Any) -> None:
        state["settled"].append(options)

    monkeypatch.setattr("imagectl.manifest.loader.load_manifest", lambda path: "manifest")
    monkeypatch.setattr("imagectl.registry.settings.make_client", FakeClient)
    monkeypatch.setattr("imagectl.service.plan", plan)
    monkeypatch.setattr("imagectl.apply.engine.commit_pending", commit_pending)
    monkeypatch.setattr("imagectl.commands.check_tools", lambda manifest: None)
    monkeypatch.setattr("imagectl.commands.run_apply", run_apply)
    return state


@dataclass
class FakeResult:
    code: int

    @property
    def interrupted(self) -> bool:
        return self.code == EXIT_INTERRUPTED

    @property
    def failed(self) -> bool:
        return self.code == 1


def test_apply_reconcile_does_nothing_when_the_plan_is_empty(
    tmp_path: Path, pipeline: dict[str, Any]
) -> None:
    reconcile = apply_reconcile(
        tmp_path / "imagectl.yaml", jobs=2, git_push=True, console=Console()
    )
    assert reconcile(T0, lambda: False) == TickResult()
    assert pipeline["now"] == T0
    assert pipeline["applied"] == []
    [settled] = pipeline["settled"]  # a quiet tick still commits and pushes what is pending
    assert settled.git_push is True and settled.push is True


def test_apply_reconcile_applies_exactly_the_plan_it_made(
    tmp_path: Path, pipeline: dict[str, Any]
) -> None:
    pipeline["actions"] = ("base", "python")
    pipeline["code"] = 1
    reconcile = apply_reconcile(
        tmp_path / "imagectl.yaml", jobs=2, git_push=True, console=Console()
    )
    assert reconcile(T0, lambda: False) == TickResult(code=1, applied=2)
    [call] = pipeline["applied"]
    settings = call["settings"]
    assert settings.jobs == 2 and settings.git_push is True and settings.push is True
    assert call["first"].plan == FakePlan(("base", "python"))  # the plan it made, in memory
    assert pipeline["planned"] == 1, "planned twice: the daemon applies the plan it made"


def test_apply_reconcile_does_not_start_an_apply_once_stopping(
    tmp_path: Path, pipeline: dict[str, Any]
) -> None:
    pipeline["actions"] = ("base",)
    reconcile = apply_reconcile(
        tmp_path / "imagectl.yaml", jobs=1, git_push=False, console=Console()
    )
    assert reconcile(T0, lambda: True) == TickResult(code=EXIT_INTERRUPTED)
    assert pipeline["applied"] == []
