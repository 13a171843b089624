"""ApplyMutex: one apply per repository, contended from real other processes.

flock belongs to an open file description, so the rival holder always runs in a child
process; the tests synchronise with it over pipes, never with sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagectl.applymutex import ApplyMutex, read_holder
from imagectl.errors import ImagectlError, LockHeldError

HOLDER = """\
import sys
from pathlib import Path
from imagectl.applymutex import ApplyMutex

with ApplyMutex(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
sys.stdin.readline()
"""


class Holder:
    """A child process holding the lock until told to let go."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "locked"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self._line() == "released"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / ".imagectl.lock.lck"


@pytest.fixture
def holder(lock_path: Path) -> Iterator[Holder]:
    child = Holder(lock_path)
    try:
        yield child
    finally:
        child.stop()


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_acquire_records_holder_and_release_empties_but_keeps_file(lock_path: Path) -> None:
    with ApplyMutex(lock_path) as lock:
        assert lock.held
        info = read_holder(lock_path)
        assert info is not None
        assert info["pid"] == os.getpid()
        assert isinstance(info["host"], str) and info["host"]
        assert isinstance(info["started_at"], str)
        assert info["started_at"].endswith("Z") and "T" in info["started_at"]
        assert isinstance(info["command"], str)
    assert not lock.held
    assert lock_path.exists()
    assert lock_path.read_text() == ""
    assert read_holder(lock_path) is None


def test_lock_can_be_taken_again_after_release(lock_path: Path) -> None:
    with ApplyMutex(lock_path):
        pass
    with ApplyMutex(lock_path) as again:
        assert again.held


def test_second_lock_in_same_process_conflicts(lock_path: Path) -> None:
    with ApplyMutex(lock_path), pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        ApplyMutex(lock_path).acquire()


def test_busy_lock_fails_at_once_naming_the_holder(lock_path: Path, holder: Holder) -> None:
    fake = FakeTime()
    with pytest.raises(LockHeldError) as caught:
        ApplyMutex(lock_path, timeout=0, clock=fake.clock, sleep=fake.sleep).acquire()
    message = str(caught.value)
    assert message.startswith(f"another imagectl apply holds {lock_path} (pid {holder.pid} on ")
    assert " since " in message
    assert message.endswith("; wait for it or retry with --lock-timeout")
    assert fake.sleeps == []
    # The loser must not have clobbered the holder's record.
    info = read_holder(lock_path)
    assert info is not None and info["pid"] == holder.pid


def test_waits_and_acquires_when_holder_releases(lock_path: Path, holder: Holder) -> None:
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        # Instead of sleeping, let the holder go and wait until it confirms.
        polls.append(seconds)
        if len(polls) == 1:
            holder.release()

    with ApplyMutex(lock_path, timeout=60, poll_interval=0.5, sleep=sleep):
        info = read_holder(lock_path)
        assert info is not None and info["pid"] == os.getpid()
    assert polls == [0.5]


def test_timeout_loop_polls_until_deadline_then_fails(lock_path: Path, holder: Holder) -> None:
    fake = FakeTime()
    # Binary-exact durations: the last sleep is cut to what is left of the timeout.
    lock = ApplyMutex(
        lock_path, timeout=1.0, poll_interval=0.375, clock=fake.clock, sleep=fake.sleep
    )
    with pytest.raises(LockHeldError) as caught:
        lock.acquire()
    assert fake.sleeps == [0.375, 0.375, 0.25]
    assert f"pid {holder.pid}" in str(caught.value)
    assert "did not release it within 1s" in str(caught.value)
    assert "--lock-timeout" in str(caught.value)
    assert not lock.held


def test_holder_killed_with_sigkill_leaves_no_stale_lock(lock_path: Path, holder: Holder) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait()
    stale = read_holder(lock_path)
    assert stale is not None and stale["pid"] == holder.pid  # record left behind...
    fake = FakeTime()
    with ApplyMutex(lock_path, timeout=0, clock=fake.clock, sleep=fake.sleep):  # ...lock not
        info = read_holder(lock_path)
        assert info is not None and info["pid"] == os.getpid()
    assert fake.sleeps == []


def test_unreadable_holder_record_still_gives_a_clear_message(lock_path: Path) -> None:
    with ApplyMutex(lock_path):
        lock_path.write_text("{not json")
        with pytest.raises(LockHeldError, match=r"\(holder unknown\); wait for it"):
            ApplyMutex(lock_path).acquire()


def test_read_holder_of_missing_file_is_none(tmp_path: Path) -> None:
    assert read_holder(tmp_path / "nope.lck") is None


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImagectlError, match="cannot open lock file"):
        ApplyMutex(tmp_path / "no" / "such" / "dir.lck").acquire()
