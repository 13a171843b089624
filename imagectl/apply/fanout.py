"""Independent registry requests of one image sent at once (one round trip, not N).

`fan_out` starts every call but the first on a thread of its own and runs the first
on the caller's thread; `Fanned.results` hands the results back in the calls' order,
each as soon as it is in (a caller can act on the first while the others fly).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Call(Generic[T]):
    """One call on a thread of its own; `get` waits for it and returns or raises."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="imagectl-fanout", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller by `get`
            self._error = exc

    def get(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Fanned(Generic[T]):
    """Calls started at once; their results in order."""

    def __init__(self, calls: Sequence[Callable[[], T]]) -> None:
        self._others = [_Call(call) for call in calls[1:]]
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
                yield pending.pop(0).get()
        finally:
            for call in pending:  # an error or a caller that stopped early: wait for the rest
                with contextlib.suppress(BaseException):  # the first error is the one raised
                    call.get()


def fan_out(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run `calls` at once; their results in order (the first error raised, after all)."""
    return list(Fanned(calls).results())
