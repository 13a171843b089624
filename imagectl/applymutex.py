"""One apply at a time per repository: an advisory ``flock`` on a lock file.

The kernel owns the lock, not the file: a holder that dies, even by SIGKILL, releases
it with its last file descriptor, so there is no stale-lock guessing and a live
holder's lock is never broken. The file only carries who holds it (JSON), for the
message the next caller sees. It is left in place on release (emptied), because
unlinking a lock file races with a process that has just opened it.

The lock is taken on an open file description: a second :class:`ApplyMutex` on the same
path conflicts even within one process, and a child forked while the lock is held
shares it (``exec``'d children do not: the descriptor is close-on-exec).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from imagectl.errors import ImagectlError, LockHeldError


class ApplyMutex:
    """An exclusive, kernel-released lock held for the length of a ``with`` block.

    Example::

        with ApplyMutex(repo / ".imagectl.lock.lck", timeout=args.lock_timeout):
            apply(plan)
    """

    def __init__(
        self,
        path: Path,
        timeout: float = 0.0,
        *,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Describe the lock; nothing is touched until it is acquired.

        Args:
            path: The lock file; created if missing, never deleted.
            timeout: Seconds to wait for a busy lock; 0 fails at once.
            poll_interval: Seconds between attempts while waiting.
            clock: Monotonic time source (injectable for tests).
            sleep: Sleep function (injectable for tests).
        """
        self.path = path
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds, then record the holder.

        Raises:
            LockHeldError: Another process still holds the lock when the time is up;
                the message names it (pid, host, since when).
            ImagectlError: The lock file cannot be opened (missing directory, permissions).
        """
        if self._fd is not None:
            raise ImagectlError(f"{self.path} is already held by this process")
        deadline = self._clock() + self.timeout
        while True:
            fd = self._try_lock()
            if fd is not None:
                break
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise LockHeldError(self._busy_message())
            self._sleep(min(self.poll_interval, remaining))
        self._fd = fd
        self._write_holder(fd)

    def release(self) -> None:
        """Empty the holder record and let go of the lock; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the record is informational; releasing the lock is what matters
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> ApplyMutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try_lock(self) -> int | None:
        """One attempt: the locked descriptor, or None when another holder has it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ImagectlError(f"cannot open lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise ImagectlError(f"cannot lock {self.path}: {exc.strerror}") from exc
        # Someone may have deleted or replaced the file between our open and flock; a
        # lock on an orphaned inode excludes nobody, so try again on the current file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_lock()
        return fd

    def _write_holder(self, fd: int) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": shlex.join(sys.argv),
        }
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def _busy_message(self) -> str:
        holder = read_holder(self.path)
        if holder is None:
            who = "holder unknown"
        else:
            who = (
                f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"since {holder.get('started_at', '?')}"
            )
        text = f"another imagectl apply holds {self.path} ({who})"
        if self.timeout > 0:
            return (
                f"{text} and did not release it within {self.timeout:g}s; "
                "wait for it or retry with a longer --lock-timeout"
            )
        return f"{text}; wait for it or retry with --lock-timeout"


def read_holder(path: Path) -> dict[str, object] | None:
    """Read who holds the lock at ``path``.

    Args:
        path: The lock file.

    Returns:
        The holder record (``pid``, ``host``, ``started_at``, ``command``), or None when
        the file is missing, empty (released) or unreadable (being written).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
