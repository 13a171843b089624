"""run_dag: order, failure isolation, interruption, and long chains (no recursion limit)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest

from imagectl.apply.scheduler import JobState, run_dag


def test_children_start_after_their_parent_in_the_order_given() -> None:
    order = ["a", "b", "a1", "b1", "a2"]
    parents = {"a1": "a", "a2": "a", "b1": "b"}
    started: list[str] = []
    results = run_dag(order, parents, started.append, jobs=1)
    assert started == ["a", "b", "a1", "a2", "b1"]
    assert {r.state for r in results.values()} == {JobState.DONE}


def test_a_failure_skips_its_descendants_only() -> None:
    order = ["a", "b", "a1", "a11", "b1"]
    parents = {"a1": "a", "a11": "a1", "b1": "b"}
    skipped: list[tuple[str, str]] = []

    def job(name: str) -> None:
        if name == "a":
            raise RuntimeError("boom")

    results = run_dag(order, parents, job, jobs=2, on_skip=lambda n, r: skipped.append((n, r)))
    assert results["a"].state is JobState.FAILED and str(results["a"].error) == "boom"
    assert skipped == [("a1", "base a failed"), ("a11", "base a failed")]
    assert results["b1"].state is JobState.DONE


def test_a_chain_longer_than_the_recursion_limit_is_skipped_whole() -> None:
    depth = sys.getrecursionlimit() + 500
    order = [f"n{i}" for i in range(depth)]
    parents = {f"n{i}": f"n{i - 1}" for i in range(1, depth)}

    def job(name: str) -> None:
        raise RuntimeError(name)

    results = run_dag(order, parents, job, jobs=1)
    assert results["n0"].state is JobState.FAILED
    assert all(results[n].state is JobState.SKIPPED for n in order[1:])


def test_a_stop_cancels_what_has_not_started() -> None:
    stop = threading.Event()
    order = ["a", "b", "c"]
    ran: list[str] = []

    def job(name: str) -> None:
        ran.append(name)
        stop.set()

    results = run_dag(order, {}, job, jobs=1, stop=stop)
    assert ran == ["a"]
    assert [results[n].state for n in order] == [
        JobState.DONE,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]


@pytest.mark.parametrize("jobs", [1, 4])
def test_every_one_of_a_wide_fleet_runs_once(jobs: int) -> None:
    order = [f"base{i}" for i in range(50)] + [f"app{i}" for i in range(2000)]
    parents = {f"app{i}": f"base{i % 50}" for i in range(2000)}
    lock = threading.Lock()
    seen: dict[str, int] = {}

    def job(name: str) -> None:
        with lock:
            seen[name] = seen.get(name, 0) + 1
            parent = parents.get(name)
            assert parent is None or parent in seen

    results = run_dag(order, parents, job, jobs=jobs)
    assert seen == dict.fromkeys(order, 1)
    assert all(r.state is JobState.DONE for r in results.values())


def test_a_finish_runs_off_the_slot_and_children_wait_for_it() -> None:
    """jobs=1: b's job starts while a's finish still runs; a1 starts only after it."""
    order = ["a", "b", "a1"]
    parents = {"a1": "a"}
    b_started = threading.Event()
    events: list[str] = []

    def finish_a() -> None:
        assert b_started.wait(10), "b never started while a was finishing"
        events.append("a finished")

    def job(name: str) -> Callable[[], None] | None:
        events.append(f"{name} started")
        if name == "b":
            b_started.set()
        return finish_a if name == "a" else None

    results = run_dag(order, parents, job, jobs=1)
    assert {r.state for r in results.values()} == {JobState.DONE}
    assert events.index("b started") < events.index("a finished") < events.index("a1 started")


def test_a_failed_finish_fails_the_job_and_skips_its_children() -> None:
    def job(name: str) -> Callable[[], None] | None:
        def finish() -> None:
            raise RuntimeError("verify failed")

        return finish if name == "a" else None

    skipped: list[tuple[str, str]] = []
    results = run_dag(
        ["a", "a1", "b"], {"a1": "a"}, job, jobs=1, on_skip=lambda n, r: skipped.append((n, r))
    )
    assert results["a"].state is JobState.FAILED and str(results["a"].error) == "verify failed"
    assert skipped == [("a1", "base a failed")]
    assert results["b"].state is JobState.DONE


def test_a_stop_lets_started_finishes_end_and_starts_nothing_new() -> None:
    stop = threading.Event()
    ran: list[str] = []

    def job(name: str) -> Callable[[], None] | None:
        stop.set()  # interrupted while the first image is being pushed

        def finish() -> None:
            ran.append(name)

        return finish

    results = run_dag(["a", "b"], {}, job, jobs=1, stop=stop)
    assert ran == ["a"] and results["a"].state is JobState.DONE
    assert results["b"].state is JobState.CANCELLED
