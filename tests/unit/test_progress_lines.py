"""Progress lines off a terminal: written as they are only when rich would print them so."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from imagectl.output.plaintable import plain_line

LINES = [
    "img0001: rebasing (0.0s)",
    "app: signing and attesting (12.3s)",
    "x" * 80,
    "x" * 81,
    "a-very-long-image-name-in-a-family: looking for an earlier push (1234.5s) and more",
    "app: [bold]pushing[/bold] (0.1s)",
    "app: :smile: done",
    "app: déjà vu (0.1s)",
    "  indented: done",
    "tab\there: done",
    "",
]


def rich_text(line: str, **console: object) -> str:
    out = io.StringIO()
    Console(file=out, **console).print(line, highlight=False)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("width", [40, 80, 120])
def test_a_plain_line_is_exactly_what_rich_prints(line: str, width: int) -> None:
    console = Console(file=io.StringIO(), width=width)
    if plain_line(console, line):
        assert rich_text(line, width=width) == line + "\n"


def test_the_fast_path_takes_the_common_lines_and_leaves_the_rest_to_rich() -> None:
    console = Console(file=io.StringIO(), width=80)
    taken = [line for line in LINES if plain_line(console, line)]
    assert taken == [*LINES[:3], ""]  # an empty line prints as a newline either way
    assert not plain_line(Console(file=io.StringIO(), force_terminal=True), LINES[0])
    assert not plain_line(Console(file=io.StringIO(), record=True), LINES[0])
    assert not plain_line(Console(file=io.StringIO(), quiet=True), LINES[0])
