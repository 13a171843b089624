"""`imagectl daemon`: the in-process reconcile loop for hosts without cron (docs/design.md §6).

Every `--interval` the daemon re-loads the manifest, plans, and applies when
anything is stale. The cadence comes from the `schedule` library; the clock and
the sleep are injected so tests drive hours of ticks in milliseconds.

`schedule` reads the time through `datetime.datetime.now()` in its own module.
While a daemon runs, that module's `datetime` name points at a shim whose
`now()` asks the daemon's clock, so the scheduler and the log agree on one
clock (the real one unless a test passes another). Only the `schedule` module
sees the shim; nothing else in the process does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Self

import schedule
from rich.console import Console

from imagectl.errors import ExitCode, ImagectlError, UsageError
from imagectl.stopsignals import STOP_SIGNALS, two_stage_stop

EXIT_INTERRUPTED = ExitCode.INTERRUPTED  # kept for callers of the old name

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""

_logger = logging.getLogger(__name__)


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_interval(text: str) -> timedelta:
    """Parse `--interval`: a positive whole number and a unit, `30s`, `15m`, `1h` or `2d`.

    Raises:
        UsageError: the text is not of that shape, or is zero.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not match:
        raise UsageError(
            f"--interval {text!r}: expected a whole number and a unit "
            "(s, m, h or d), e.g. 30s, 15m, 1h, 2d"
        )
    interval = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not interval:
        raise UsageError(f"--interval {text!r}: must be at least 1s")
    return interval


def utc_now() -> datetime:
    """The real clock, as an aware UTC datetime."""
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TickResult:
    """What one reconcile did.

    Attributes:
        code: the exit code of the tick (0 ok, 1 failed, 130 interrupted).
        applied: images in the plan that was applied (0: nothing to do).
        failure: why the tick failed, when it raised instead of returning a code.
        pulled: commits fast-forwarded from the upstream before planning.
    """

    code: int = 0
    applied: int = 0
    failure: str | None = None
    pulled: int = 0

    def outcome(self) -> str:
        """`nothing to do`, `applied N images`, `interrupted …` or `failed: message`,
        after `pulled N commits, ` when the tick fast-forwarded the branch."""
        pulled = f"pulled {self.pulled} commit{'s' if self.pulled != 1 else ''}, "
        return (pulled if self.pulled else "") + self._outcome()

    def _outcome(self) -> str:
        images = f"{self.applied} image{'s' if self.applied != 1 else ''}"
        if self.failure is not None:
            return f"failed: {self.failure}"
        if self.code == ExitCode.INTERRUPTED:
            if self.applied:
                return f"interrupted: stopped applying {images} after the ones in flight"
            return "interrupted before applying"
        if self.code != 0:
            return f"failed: applying {images} exited with code {self.code}"
        return f"applied {images}" if self.applied else "nothing to do"


Reconcile = Callable[[datetime, Callable[[], bool]], TickResult]
"""One reconcile: called with the tick's time and a `stopping()` query; returns the outcome."""


def _one_line(exc: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, ImagectlError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _schedule_clock(clock: Clock) -> Iterator[None]:
    """Make `schedule` read `clock` (as naive UTC) instead of the system time."""

    class ClockDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            moment = clock().astimezone(tz or UTC)
            value = cls.combine(moment.date(), moment.timetz())
            return value if tz is not None else value.replace(tzinfo=None)

    namespace = vars(schedule)
    real = namespace["datetime"]
    shim = types.ModuleType(real.__name__)
    vars(shim).update(vars(real), datetime=ClockDatetime)
    namespace["datetime"] = shim
    try:
        yield
    finally:
        namespace["datetime"] = real


class Daemon:
    """The scheduled reconcile loop.

    A tick runs at start, then every `interval` after the previous tick ended
    (the `schedule` library's rule: missed ticks are not caught up). A tick that
    raises is logged and the loop goes on. `request_stop()` (also what SIGTERM
    and SIGINT do) lets the tick in flight finish, then `run()` returns 0.

    Args:
        reconcile: one reconcile (`apply_reconcile` builds the real one).
        interval: time between the end of one tick and the start of the next.
        clock: the current time, aware UTC.
        sleep: blocks for the given seconds.
        log: receives one line per tick.
        poll: longest single sleep, so a stop request ends the wait promptly.
    """

    def __init__(
        self,
        reconcile: Reconcile,
        *,
        interval: timedelta,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print,
        poll: float = 1.0,
    ) -> None:
        if interval < timedelta(seconds=1):
            raise UsageError("the daemon interval must be at least 1s")
        if poll <= 0:
            raise ValueError("poll must be positive")
        self._reconcile = reconcile
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._log = log
        self._poll = poll
        self._stop = False
        self._scheduler = schedule.Scheduler()
        self._last: TickResult | None = None
        self._started = clock()
        self._wakeup: socket.socket | None = None

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop

    def request_stop(self) -> None:
        """Finish the tick in flight (if any), then leave the loop."""
        self._stop = True

    def run(self) -> int:
        """Tick now, then at every interval until a stop is requested; returns 0."""
        with self._signals(), _schedule_clock(self._clock):
            self._scheduler.every(int(self._interval.total_seconds())).seconds.do(self._job)
            self._scheduler.run_all()
            self._log_tick(once=False)
            while not self._stop:
                idle = self._scheduler.idle_seconds
                if idle is not None and idle > 0:
                    self._sleep(min(idle, self._poll))
                    continue
                self._last = None
                self._scheduler.run_pending()
                self._log_tick(once=False)
        return ExitCode.OK

    def run_once(self) -> int:
        """Run one tick and return its exit code."""
        with self._signals():
            self._job()
        self._log_tick(once=True)
        assert self._last is not None
        return self._last.code

    def _job(self) -> None:
        started = self._clock()
        self._started = started
        try:
            result = self._reconcile(started, lambda: self._stop)
        except Exception as exc:
            if not isinstance(exc, ImagectlError):
                _logger.error("daemon tick failed unexpectedly", exc_info=exc)
            code = exc.exit_code if isinstance(exc, ImagectlError) else ExitCode.FAILED
            result = TickResult(code=code, failure=_one_line(exc))
        if result.code == ExitCode.INTERRUPTED or self._heard_stop_signal():
            # The apply inside caught the signal itself and finished its images in flight.
            self.request_stop()
        self._last = result

    def _log_tick(self, *, once: bool) -> None:
        result = self._last
        if result is None:
            return
        finished = self._clock()
        seconds = (finished - self._started).total_seconds()
        if once:
            after = "--once: no next tick"
        elif self._stop:
            after = "stopping: no next tick"
        else:
            next_run = self._scheduler.next_run
            after = f"next tick {_stamp(next_run.replace(tzinfo=UTC))}" if next_run else ""
        self._log(f"{_stamp(self._started)} tick: {result.outcome()} in {seconds:.1f}s; {after}")

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """First SIGTERM/SIGINT: stop after the tick in flight. Second: the default action.

        While an apply runs, its own handler takes the signal (to finish the images
        in flight); the wakeup socket still hears it, so the loop stops after that
        tick even when the apply had nothing left to cancel.
        """
        message = (
            "imagectl daemon: {signal}: finishing the tick in flight, then exiting "
            "(send again to abort)"
        )
        with two_stage_stop(lambda: self._stop, self.request_stop, message) as installed:
            if not installed:
                yield
                return
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            self._wakeup = reader
            try:
                yield
            finally:
                self._wakeup = None
                signal.set_wakeup_fd(previous_fd)
                reader.close()
                writer.close()

    def _heard_stop_signal(self) -> bool:
        """Drain the wakeup socket; True if SIGINT or SIGTERM arrived since the last look."""
        if self._wakeup is None:
            return False
        heard = False
        with contextlib.suppress(BlockingIOError):
            while data := self._wakeup.recv(512):
                heard = heard or any(byte in STOP_SIGNALS for byte in data)
        return heard


def apply_reconcile(
    manifest_path: Path, *, jobs: int, git_push: bool, console: Console
) -> Reconcile:
    """The real reconcile, as a git-ops agent does it: pull, plan, apply, commit, push.

    1. When the manifest lives in a git work tree whose branch has an upstream, fetch
       it and fast-forward (under the repository lock). A diverged branch fails the
       tick with a message saying so: never merged, never forced.
    2. Plan (outside the repository lock: a quiet tick stays quiet).
    3. Nothing to do: still commit a lock that differs from HEAD, and under
       `--git-push` push a branch that is ahead (a run that died before its commit
       or push is caught up by the next tick).
    4. Else apply that very plan, in memory, through the service layer as `imagectl
       apply` does (under `--git-push` it claims the versions in git first; a claim
       refused because the remote moved re-plans); the images counted are the ones
       of the plan it applied.
    """

    def reconcile(now: datetime, stopping: Callable[[], bool]) -> TickResult:
        from imagectl import commands, gitops, service
        from imagectl.apply.engine import ApplyOptions, commit_pending
        from imagectl.applymutex import ApplyMutex
        from imagectl.manifest.loader import load_manifest
        from imagectl.manifest.models import Manifest
        from imagectl.plan.model import PlanOptions
        from imagectl.registry.settings import make_client

        worktree = gitops.find_worktree(manifest_path.parent)
        pulled = 0
        if worktree is not None:
            with ApplyMutex(state_dir_of(manifest_path) / "apply.lck", timeout=0.0):
                pulled = gitops.sync(worktree).pulled
        manifest = load_manifest(manifest_path)
        with make_client() as client:

            def planner(current: Manifest) -> service.Planned:
                return service.plan(current, client, now=now, options=PlanOptions())

            planned = planner(manifest)
            if not planned.plan.actions:
                with ApplyMutex(state_dir_of(manifest_path) / "apply.lck", timeout=0.0):
                    commit_pending(manifest, ApplyOptions(git_push=git_push))
                return TickResult(pulled=pulled)
            if stopping():
                return TickResult(code=ExitCode.INTERRUPTED, pulled=pulled)
            commands.check_tools(manifest)  # `sbom: true` without trivy fails here
            settings = ApplyOptions(jobs=jobs, git_push=git_push)
            with ApplyMutex(state_dir_of(manifest_path) / "apply.lck", timeout=0.0):
                applied = commands.run_apply(
                    manifest,
                    client,
                    settings,
                    first=planned,
                    replan=planner,
                    worktree=worktree,
                    console=console,
                )
        count = len(applied.plan.actions) if applied.result is not None else 0
        return TickResult(code=commands.exit_code(applied), applied=count, pulled=pulled)

    return reconcile


def state_dir_of(manifest_path: Path) -> Path:
    """`.imagectl/` beside the manifest (before the manifest is loaded)."""
    from imagectl.fsutil import state_dir

    return state_dir(manifest_path.resolve().parent)


def daemon_command(
    manifest_path: Path,
    *,
    interval: str,
    once: bool,
    jobs: int,
    git_push: bool,
    console: Console,
) -> int:
    """`imagectl daemon`: the reconcile loop, or one tick with `once`; returns the exit code."""
    daemon = Daemon(
        apply_reconcile(manifest_path, jobs=jobs, git_push=git_push, console=console),
        interval=parse_interval(interval),
        log=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    if once:
        return daemon.run_once()
    console.print(
        f"imagectl daemon: reconciling {manifest_path} every {interval.strip()}; "
        "SIGTERM or Ctrl-C stops after the tick in flight",
        markup=False,
        highlight=False,
    )
    return daemon.run()
