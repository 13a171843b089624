"""apply/fanout.py: independent requests of one image sent at once."""

from __future__ import annotations

import threading

import pytest

from imagectl.apply.fanout import Fanned, fan_out


def test_calls_run_at_once_and_results_come_in_order() -> None:
    together = threading.Barrier(3, timeout=10)  # breaks unless all three run at once

    def call(value: int) -> int:
        together.wait()
        return value

    assert fan_out([lambda: call(1), lambda: call(2), lambda: call(3)]) == [1, 2, 3]
    assert fan_out([]) == []


def test_the_first_result_is_handed_back_while_the_others_are_in_flight() -> None:
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        assert release.wait(10)
        finished.append("slow")
        return "slow"

    results = Fanned([lambda: "fast", slow]).results()
    assert next(results) == "fast" and finished == []  # the caller acts on the first now
    release.set()
    assert next(results) == "slow"


def test_an_error_is_raised_after_every_call_finished() -> None:
    release = threading.Event()
    finished: list[str] = []

    def failing() -> str:
        release.set()
        raise RuntimeError("PUT refused")

    def other() -> str:
        assert release.wait(10)
        finished.append("other")
        return "other"

    with pytest.raises(RuntimeError, match="PUT refused"):
        fan_out([failing, other])
    assert finished == ["other"]  # nothing left running behind the caller
