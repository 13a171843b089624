"""Two-stage stop on SIGINT/SIGTERM, shared by `apply` and the daemon.

The first signal asks for a graceful stop (the caller's `request_stop`) and says so on
stderr; the second kills every build imagectl started and dies of the signal
(`proc.die_of`): no build may outlive imagectl.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def two_stage_stop(
    stopping: Callable[[], bool], request_stop: Callable[[], None], message: str
) -> Iterator[bool]:
    """Install the handlers for the block; yields whether they were installed (signal
    handlers exist only in the main thread). `message` is formatted with `{signal}`."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopping():
            from imagectl.proc import die_of

            die_of(signum)
        request_stop()
        print(message.format(signal=signal.Signals(signum).name), file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
