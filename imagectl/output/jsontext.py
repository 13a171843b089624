"""Indented JSON at the speed of the C encoder's parts: `plan --json` of 10,000 images.

``json.dumps(value, indent=2)`` falls back to the pure-Python encoder (0.3 s for a
10,000-image plan); this writes the same bytes with one list comprehension and one
``join`` per container, each string escaped by the C ``encode_basestring_ascii``
(0.15 s). Anything other than plain JSON data (non-string keys, other types) is
handed to ``json.dumps`` unchanged, so the output is always identical to it.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

_scalar = json.JSONEncoder().encode  # floats (nan, inf) exactly as json.dumps writes them


class _NotPlain(Exception):
    """The value holds something `_encode` does not write as json.dumps would."""


def dumps_indented(value: Any) -> str:
    """``json.dumps(value, indent=2)``, the same text, faster for large plain documents."""
    try:
        return _encode(value, "\n")
    except (_NotPlain, TypeError):  # TypeError: a key that is not a string
        return json.dumps(value, indent=2)


def _encode(value: Any, newline: str) -> str:
    """`value` as indented JSON; `newline` is a newline plus the indentation of its line."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = newline + "  "
        items = [
            encode_basestring_ascii(key)
            + ": "
            + (encode_basestring_ascii(item) if isinstance(item, str) else _encode(item, inner))
            for key, item in value.items()
        ]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = newline + "  "
        elements = [
            encode_basestring_ascii(item) if isinstance(item, str) else _encode(item, inner)
            for item in value
        ]
        return "[" + inner + ("," + inner).join(elements) + newline + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _scalar(value)
    raise _NotPlain
