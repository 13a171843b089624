"""A rich table printed without rich's per-cell machinery when the output is plain text.

rich lays out and renders every cell through its generic renderable pipeline (markup,
measurement, wrapping, segments): about 1 ms per row of a 5-column table, 0.5 s for the
plan table of a 500-image apply and as much again for its summary. Off a terminal (a CI
log, a pipe, a file) nothing is styled, so `FastTable` lays the same table out itself: the
column widths still come from rich (`Table._calculate_column_widths` on a table of one
representative row per measurement, so they are rich's own), cells that fit their column
are padded, the others are wrapped by rich's `Text.wrap` (once per distinct text and width),
and the borders are rich's box strings. The text printed is the same, character for
character (tests/unit/test_plaintable.py compares both on generated tables).

Anything the fast path does not reproduce is left to rich: a terminal or colours, a
non-UTF-8 console (ASCII boxes), cells that are not single-width printable ASCII, rich
markup (`[`) or emoji codes (`:name:`), tabs, or a table styled beyond `plan_table` and
`summary_table` (row styles, lines, footers, fixed column widths, ...).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import cast

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

# rich replaces `:name:` codes with emoji in every string it renders (rich/_emoji_replace.py)
_EMOJI_CODE = re.compile(r":(\S*?):")


class FastTable:
    """`table`, printed by rich on a terminal or in colour, and line by line (`_body`) on
    plain-text output."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table
        layout = plain_layout(table, console, options)
        if layout is None:
            yield table
            return
        columns, widths = layout
        if table.title:  # one line, rendered by rich as its Table does (`render_annotation`)
            title = table.title
            style = Style.pick_first(table.title_style, "table.title")
            text = (
                console.render_str(title, style=style, highlight=False)
                if isinstance(title, str)
                else title
            )
            width = sum(widths) + table._extra_width
            yield from console.render(
                text,
                options.update(
                    width=width, highlight=table.highlight, height=None, justify=table.title_justify
                ),
            )
        for line in _body(table, columns, widths):
            yield Segment(line)
            yield Segment.line()


def plain_layout(
    table: Table, console: Console, options: ConsoleOptions
) -> tuple[list[list[str]], list[int]] | None:
    """The cells (header first) and rich's widths of each column of `table` on this
    plain-text console; None when the fast path does not apply (rich prints it then)."""
    if not _plain_console(console, options) or not _plain_layout(table):
        return None
    columns = _text_columns(table)
    if columns is None:
        return None
    widths = _widths(table, console, options, columns)
    return None if widths is None else (columns, widths)


def plain_lines(table: Table, console: Console, options: ConsoleOptions) -> list[str] | None:
    """The lines of `table` below its title as rich prints them on this console; None when
    the fast path does not apply."""
    layout = plain_layout(table, console, options)
    return None if layout is None else list(_body(table, *layout))


def _plain_console(console: Console, options: ConsoleOptions) -> bool:
    return (
        not console.is_terminal
        and console.color_system is None
        and not options.legacy_windows
        and not options.ascii_only
    )


def _plain_layout(table: Table) -> bool:
    """The table options `_body` reproduces (those of imagectl's tables)."""
    return (
        table.box is box.HEAVY_HEAD
        and table.show_header
        and table.show_edge
        and not table.show_footer
        and not table.show_lines
        and not table.leading
        and not table.expand
        and table.width is None
        and table.min_width is None
        and table.padding == (0, 1, 0, 1)
        and not table.collapse_padding
        and table.pad_edge
        and not table.caption
        and not table.row_styles
        and all(row.style is None for row in table.rows)
        and all(
            column.justify == "left"
            and column.vertical == "top"
            and not column.no_wrap
            and column.width is None
            and column.min_width is None
            and column.max_width is None
            and column.ratio is None
            for column in table.columns
        )
    )


def _text_columns(table: Table) -> list[list[str]] | None:
    """Each column's header and cells, when every one is printable ASCII lines without
    markup or emoji codes; else None."""
    columns: list[list[str]] = []
    for column in table.columns:
        cells = [column.header, *column._cells]
        for cell in cells:
            if not isinstance(cell, str) or not _plain_text(cell):
                return None
        columns.append(cast(list[str], cells))
    return columns


def plain_line(console: Console, line: str) -> bool:
    """Whether ``console.print(line, highlight=False)`` would write `line` and a newline,
    nothing else: plain-text output, a single line of printable ASCII with no markup or
    emoji code, no wider than the console (rich folds a longer one)."""
    return (
        not console.is_terminal
        and console.color_system is None
        and not console.record
        and not console.quiet
        and not console.legacy_windows
        and "\n" not in line
        and _plain_text(line)
        and len(line) <= console.width
        and line == line.strip()
    )


def _plain_text(cell: str) -> bool:
    return (
        cell.isascii()
        and "[" not in cell
        and cell.replace("\n", "").isprintable()
        and _EMOJI_CODE.search(cell) is None
    )


def _widths(
    table: Table, console: Console, options: ConsoleOptions, columns: list[list[str]]
) -> list[int] | None:
    """rich's column widths (padding included), computed on a table of a few rows that
    holds, per column, the cell with the widest word and the one with the longest line:
    a column's measurement is the maximum of its cells' (rich/table.py `_measure_column`)."""
    widest_word, longest_line = [], []
    for column in columns:
        widest_word.append(max(column, key=_word_width))
        longest_line.append(max(column, key=_line_width))
    sample = Table(box=table.box, show_header=False)
    for _ in columns:
        sample.add_column(overflow="fold")
    sample.add_row(*widest_word)
    sample.add_row(*longest_line)
    max_width = options.max_width - table._extra_width
    widths = sample._calculate_column_widths(console, options.update_width(max_width))
    return widths if all(width > 2 for width in widths) else None


def _word_width(cell: str) -> int:
    """rich's minimum width of a text: its longest word (its longest line without words)."""
    if " " not in cell and "\n" not in cell:
        return len(cell)
    return max(map(len, cell.split()), default=_line_width(cell))


def _line_width(cell: str) -> int:
    """rich's maximum width of a text: its longest line."""
    return len(cell) if "\n" not in cell else max(map(len, cell.split("\n")))


def _body(table: Table, columns: list[list[str]], widths: list[int]) -> Iterator[str]:
    """The borders, the header and the rows, as rich/table.py `_render` draws them."""
    outline = table.box
    assert outline is not None
    inner = [width - 2 for width in widths]
    rows = list(zip(*columns, strict=True))
    sections = [False, *(row.end_section for row in table.rows)]
    yield outline.get_top(widths)
    for index, row in enumerate(rows):
        first, last = index == 0, index == len(rows) - 1
        cells = [_cell_lines(text, width) for text, width in zip(row, inner, strict=True)]
        height = max(len(lines) for lines in cells)
        # the header row is aligned to the bottom, the others to the top (rich's `_render`)
        shaped = [
            _shape(lines, width, height, bottom=first)
            for lines, width in zip(cells, inner, strict=True)
        ]
        if first:
            left, right, divider = outline.head_left, outline.head_right, outline.head_vertical
        elif last:
            left, right, divider = outline.foot_left, outline.foot_right, outline.foot_vertical
        else:
            left, right, divider = outline.mid_left, outline.mid_right, outline.mid_vertical
        between = f" {divider} "
        for parts in zip(*shaped, strict=True):
            yield f"{left} {between.join(parts)} {right}"
        if first:
            yield outline.get_row(widths, "head")
        elif sections[index] and not last:
            yield outline.get_row(widths, "row")
    yield outline.get_bottom(widths)


def _shape(lines: list[str], width: int, height: int, *, bottom: bool) -> list[str]:
    blank = [" " * width] * (height - len(lines))
    return [*blank, *lines] if bottom else [*lines, *blank]


def _cell_lines(text: str, width: int) -> list[str]:
    """`text` in a column `width` wide, each line padded to it."""
    if len(text) <= width and "\n" not in text:
        return [text + " " * (width - len(text))]
    return _wrapped(text, width)


@functools.lru_cache(maxsize=4096)
def _wrapped(text: str, width: int) -> list[str]:
    lines = Text(text).wrap(_wrap_console(), width, justify="left", overflow="fold")
    return [line.plain + " " * (width - len(line.plain)) for line in lines]


@functools.cache
def _wrap_console() -> Console:
    """Text.wrap wants a console; for printable ASCII text without tabs any will do."""
    return Console(color_system=None, force_terminal=False, width=80)
