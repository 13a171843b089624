"""FastTable prints what rich prints, off a terminal, without rendering each cell with rich."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import pytest
from rich.console import Console, ConsoleOptions, RenderableType
from rich.table import Table

from imagectl.output.plaintable import FastTable, plain_lines

WORDS = ["a", "img0042", "base-updated", "1.0 -> 1.0.1", "latest", "x" * 30, "rebase:", ""]


def cli_console(width: int, *, soft_wrap: bool = True) -> Console:
    """The console `imagectl` prints to when stdout is no terminal (cli._console)."""
    return Console(file=io.StringIO(), width=width, highlight=False, soft_wrap=soft_wrap)


def printed(console: Console, renderable: RenderableType) -> str:
    console.print(renderable)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def options_of(console: Console) -> ConsoleOptions:
    return console.options


def random_cell(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        words = [rng.choice(WORDS) or "-" for _ in range(rng.randint(0, 12))]
        if rng.random() < 0.2:
            words.append("w" * rng.randint(1, 150))  # longer than any column: folded
        separator = rng.choice([" ", " ", ", ", "  "])
        lines.append(separator.join(words))
    return "\n".join(lines)


def random_table(rng: random.Random) -> Table:
    title = rng.choice([None, "imagectl apply", "t" * rng.randint(1, 200)])
    table = Table(header_style="bold", title=title)
    for _ in range(rng.randint(1, 7)):
        table.add_column(rng.choice(["image", "reasons", "tags", "h" * 12]), overflow="fold")
    for _ in range(rng.randint(0, 12)):
        cells = [random_cell(rng) for _ in table.columns]
        table.add_row(*cells, end_section=rng.random() < 0.3)
    return table


def cases(count: int) -> Iterator[tuple[int, int]]:
    for seed in range(count):
        yield seed, random.Random(seed).choice([20, 40, 60, 80, 120, 160, 250])


@pytest.mark.parametrize(("seed", "width"), list(cases(200)))
def test_the_fast_path_prints_what_rich_prints(seed: int, width: int) -> None:
    table = random_table(random.Random(seed))
    console = cli_console(width)
    if width >= 40:  # narrower, some columns get no room for text: rich prints those
        assert plain_lines(table, console, options_of(console)) is not None
    for soft_wrap in (True, False):
        expected = printed(cli_console(width, soft_wrap=soft_wrap), table)
        fast = printed(cli_console(width, soft_wrap=soft_wrap), FastTable(table))
        assert fast == expected, f"seed {seed}, width {width}\n{expected}\n{fast}"


def test_the_fast_path_is_taken_for_imagectl_tables() -> None:
    table = Table(header_style="bold", title="imagectl apply")
    for column in ("image", "reasons", "method", "version", "tags"):
        table.add_column(column, overflow="fold")
    why = "rebase: only the base moved and the final stage only adds files on it"
    for index in range(500):
        table.add_row(f"img{index:04d}", "base-updated", why, "1.0 -> 1.0.1", "1.0.1, 1.0")
    console = cli_console(120)
    lines = plain_lines(table, console, options_of(console))
    assert lines is not None
    expected = printed(cli_console(120), table)
    assert "imagectl apply\n" + "\n".join(lines) + "\n" == expected
    assert printed(cli_console(120), FastTable(table)) == expected
    assert len(lines) > 1000  # the method column is folded onto two lines per row


def test_rich_prints_what_the_fast_path_does_not_reproduce() -> None:
    def one_row(*cells: str) -> Table:
        table = Table()
        table.add_column("a", overflow="fold")
        table.add_column("b", overflow="fold")
        table.add_row(*cells)
        return table

    plain = cli_console(80)
    for table in (
        one_row("[bold]markup[/bold]", "x"),
        one_row("a :thumbs_up: emoji", "x"),
        one_row("tab\there", "x"),
        one_row("wide 界", "x"),
    ):
        assert plain_lines(table, plain, options_of(plain)) is None
        assert printed(cli_console(80), FastTable(table)) == printed(cli_console(80), table)
    terminal = Console(file=io.StringIO(), width=80, force_terminal=True)
    table = one_row("a", "b")
    assert plain_lines(table, terminal, options_of(terminal)) is None
    coloured = Console(file=io.StringIO(), width=80, color_system="truecolor")
    assert plain_lines(table, coloured, options_of(coloured)) is None
    styled = one_row("a", "b")
    styled.show_lines = True
    assert plain_lines(styled, plain, options_of(plain)) is None


def test_cells_are_not_rendered_one_by_one_by_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    table = Table(header_style="bold")
    for column in ("image", "version"):
        table.add_column(column, overflow="fold")
    for index in range(500):
        table.add_row(f"img{index:04d}", "1.0 -> 1.0.1")
    calls = 0
    render_lines = Console.render_lines

    def counting(self: Console, *args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return render_lines(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Console, "render_lines", counting)
    printed(cli_console(120), FastTable(table))
    assert calls < 10
    calls = 0
    printed(cli_console(120), table)
    assert calls > 1000  # rich: every cell of every row
