"""Run a DAG of jobs: each starts as soon as its parent is done, at most N at once.

A failed job fails alone: its descendants are skipped, everything independent
goes on. No level barriers. Generic over the job so it is unit-testable.

A job may hand back a finish: the rest of its work, which needs no slot (for
apply: verify, sign, tag and record, after the builder pushed). The finish runs
on a pool of its own while the next job takes the slot; the name is done, and
its children may start, once the finish returns. So a slot (a builder) never
waits on the registry round trips of the image it just pushed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

Finish = Callable[[], None]
_R = TypeVar("_R")


class JobState(StrEnum):
    """Final state of one job."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobResult:
    """What happened to one job; `error` holds the failure or the reason for skipping."""

    name: str
    state: JobState
    error: BaseException | None = None
    reason: str = ""


def run_dag(
    order: Sequence[str],
    parents: Mapping[str, str | None],
    job: Callable[[str], Finish | None],
    *,
    jobs: int,
    stop: threading.Event | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> dict[str, JobResult]:
    """Run `job(name)` for every name, each after its parent (if it is in `order`).

    Args:
        order: names, parents before children.
        parents: name -> the name it waits for (None or absent: none).
        job: does the work in a slot; raising marks the name failed. It may return
            a finish, run outside the slot; the name is done when that returns
            (raising marks it failed).
        jobs: maximum concurrent jobs (slots); at most as many finishes run at
            once, and no job starts while more than that many are pending.
        stop: when set, no new job starts; waiting ones are cancelled (finishes
            of started jobs run to their end).
        on_skip: called with (name, reason) when a job is skipped or cancelled.
    """
    stop = stop or threading.Event()
    names = set(order)
    waiting_on = {n: p for n, p in parents.items() if n in names and p in names}
    children: dict[str, list[str]] = {}
    for name in order:  # each parent's children in the order given: no scan per finished job
        parent = waiting_on.get(name)
        if parent is not None:
            children.setdefault(parent, []).append(name)
    results: dict[str, JobResult] = {}
    ready = deque(n for n in order if waiting_on.get(n) is None)
    slots = max(1, jobs)
    running: dict[Future[Finish | None], str] = {}
    finishing: dict[Future[None], str] = {}
    # Each future puts itself here when done: the loop waits on one queue, not on every
    # pending future (`concurrent.futures.wait` arms and disarms a waiter on each of them
    # per completion, which on a fleet of small jobs costs more than the jobs' own work).
    completed: SimpleQueue[Future[Any]] = SimpleQueue()

    def submit(executor: ThreadPoolExecutor, call: Callable[..., _R], *args: Any) -> Future[_R]:
        future = executor.submit(call, *args)
        future.add_done_callback(completed.put)
        return future

    def skip_below(name: str, reason: str) -> None:
        below = list(reversed(children.get(name, [])))
        while below:  # depth first, in order, without recursion (chains may be long)
            child = below.pop()
            if child not in results:
                results[child] = JobResult(child, JobState.SKIPPED, reason=reason)
                if on_skip:
                    on_skip(child, reason)
                below.extend(reversed(children.get(child, [])))

    def settle(name: str, error: BaseException | None) -> None:
        if error is None:
            results[name] = JobResult(name, JobState.DONE)
            ready.extend(children.get(name, []))
        else:
            results[name] = JobResult(name, JobState.FAILED, error=error)
            skip_below(name, f"base {name} failed")

    with (
        ThreadPoolExecutor(max_workers=slots, thread_name_prefix="imagectl") as pool,
        ThreadPoolExecutor(max_workers=slots, thread_name_prefix="imagectl-finish") as tails,
    ):
        while ready or running or finishing:
            while ready and len(running) < slots and len(finishing) <= slots and not stop.is_set():
                name = ready.popleft()
                running[submit(pool, job, name)] = name
            if stop.is_set():
                for name in ready:
                    results[name] = JobResult(name, JobState.CANCELLED, reason="interrupted")
                    if on_skip:
                        on_skip(name, "interrupted")
                ready.clear()
            if not running and not finishing:
                break
            for future in _drain(completed):
                if future in finishing:
                    settle(finishing.pop(future), future.exception())
                    continue
                name = running.pop(future)
                error = future.exception()
                finish = future.result() if error is None else None
                if finish is not None:
                    finishing[submit(tails, finish)] = name
                else:
                    settle(name, error)
    for name in order:
        if name not in results:
            results[name] = JobResult(name, JobState.CANCELLED, reason="interrupted")
            if on_skip:
                on_skip(name, "interrupted")
    return results


def _drain(completed: SimpleQueue[Future[Any]]) -> list[Future[Any]]:
    """The futures done: at least one (waiting for it), and any others already in."""
    done = [completed.get()]
    while True:
        try:
            done.append(completed.get_nowait())
        except Empty:
            return done
