"""dumps_indented writes exactly what json.dumps(value, indent=2) writes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from imagectl.output.jsontext import dumps_indented
from imagectl.plan.model import StaleReason

CASES: list[Any] = [
    {},
    [],
    "",
    0,
    -1.5,
    None,
    True,
    {"a": [], "b": {}, "c": [[]], "d": [{}]},
    {"format": 1, "actions": [{"image": "a", "reasons": [StaleReason.NEW], "x": None}]},
    {"ünïcode": 'snow ☃ \u2028 \x00 "quoted" \\ back', "emoji": "🐳"},
    [1, 2.5, float("nan"), float("inf"), -float("inf"), 10**30, False, None],
    {"nested": {"deeper": {"deepest": ["x", ["y", {"z": 1}]]}}},
    ("a", "tuple"),
    {1: "an int key", None: "a null key", False: "a bool key", 2.5: "a float key"},
]


@pytest.mark.parametrize("value", CASES)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2)


def test_same_text_for_random_documents() -> None:
    rng = random.Random(7)
    alphabet = ["a", "é", '"', "\\", "\n", "☃", "🐳", " ", "\x7f"]

    def make(depth: int) -> Any:
        kind = rng.randrange(8 if depth < 4 else 4)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(5)))
        if kind == 1:
            return rng.choice([None, True, False, 0, -7, 3.25, 1e100])
        if kind in (2, 3):
            return rng.choice(["x", "", "1.2.3"])
        if kind in (4, 5):
            return [make(depth + 1) for _ in range(rng.randrange(4))]
        keys = [rng.choice(alphabet) * i if kind == 6 else f"k{i}" for i in range(rng.randrange(4))]
        return {key: make(depth + 1) for key in keys}

    for _ in range(300):
        value = make(0)
        assert dumps_indented(value) == json.dumps(value, indent=2)


def test_what_json_cannot_write_fails_as_json_dumps_does() -> None:
    with pytest.raises(TypeError):
        dumps_indented({"a": object()})
    with pytest.raises(TypeError):
        dumps_indented({("tuple", "key"): 1})
