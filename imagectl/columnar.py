"""Rows of values stored as columns of distinct values: the caches' compact form.

A fleet repeats most of its values across thousands of rows (a registry, a context,
a tag list, a build date). Each column keeps every distinct value once, in the
order first seen, and a row holds indexes into the columns: the JSON is a fraction
of the size and decodes faster, and a reader converts each distinct value once.
Values are told apart by their JSON text, so two values are shared only when they
serialise the same, key order included.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


def to_columns(
    rows: Iterable[Sequence[Any]], width: int
) -> tuple[list[list[Any]], list[list[int]]]:
    """(each field's distinct values, the rows as indexes into them).

    Raises:
        ValueError: a row is not `width` values long.
    """
    columns: list[list[Any]] = [[] for _ in range(width)]
    known: list[dict[str, int]] = [{} for _ in range(width)]
    indexed: list[list[int]] = []
    for row in rows:
        out: list[int] = []
        for value, column, seen in zip(row, columns, known, strict=True):
            key = json.dumps(value, separators=(",", ":"))
            index = seen.get(key)
            if index is None:
                index = seen[key] = len(column)
                column.append(value)
            out.append(index)
        indexed.append(out)
    return columns, indexed


def values_of(columns: list[list[Any]], row: Any) -> Iterator[Any]:
    """The values a row of indexes names, in field order.

    Raises:
        ValueError: the row is not one index per column.
        IndexError, TypeError: (when iterated) an index that names no value.
    """
    if not isinstance(row, list) or len(row) != len(columns):
        raise ValueError("a row of another length")
    return map(operator.getitem, columns, row)


__all__ = ["to_columns", "values_of"]
