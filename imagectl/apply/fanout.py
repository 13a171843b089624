"""Independent registry requests of one image sent at once (one round trip, not N).

`Fanned` hands every call but the first to a pool of threads shared by the process
and runs the first on the caller's thread; `results` gives the results back in the
calls' order, each as soon as it is in (a caller can act on the first while the
others fly). The pool's threads start once and wait for work: starting a thread per
request would cost more than the round trip it saves on a loaded machine.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

_WORKERS = 16  # a call waits in the queue when every worker is busy: slower, never stuck
_pool: ThreadPoolExecutor | None = None
_pool_mutex = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_mutex:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="imagectl-fanout")
        return _pool


class Fanned(Generic[T]):
    """Calls started at once; their results in order."""

    def __init__(self, calls: Sequence[Callable[[], T]]) -> None:
        pool = _shared_pool() if len(calls) > 1 else None
        self._others: list[Future[T]] = [pool.submit(c) for c in calls[1:]] if pool else []
        self._first = calls[0] if calls else None

    def results(self) -> Iterator[T]:
        """Each call's result in the calls' order, as soon as it is in.

        When a call raised, its exception is raised in its turn, after every call
        started has finished (none is left running behind the caller).
        """
        pending = list(self._others)
        try:
            if self._first is not None:
                yield self._first()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:  # an error or a caller that stopped early: wait for the rest
                with contextlib.suppress(BaseException):  # the first error is the one raised
                    future.result()


def fan_out(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run `calls` at once; their results in order (the first error raised, after all)."""
    return list(Fanned(calls).results())
