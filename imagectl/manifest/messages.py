"""Pydantic validation errors in the user's words.

Every type or choice error names the value as it is written in the file and
what is accepted there (`bump: 'sideways' is not one of: patch, revision`);
pydantic's own phrasing ("Input should be ...") never reaches the user. Pure:
the caller passes the value's text as written when it knows it.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

Loc = tuple[str | int, ...]


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated wrappers from a type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def annotation_at(model: type[BaseModel], loc: Loc) -> Any:
    """The (unwrapped) type the model expects at `loc`, or None when unknown."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        if origin in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        return None
    return _unwrap(current)


def allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model accepts in the mapping at `loc`."""
    current = annotation_at(model, loc)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def choices_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The values a `Literal` field at `loc` accepts, as a user writes them."""
    current = annotation_at(model, loc)
    if typing.get_origin(current) is typing.Literal:
        return [_yaml_word(v) for v in typing.get_args(current)]
    return []


def _yaml_word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown(value: Any, written: str | None) -> str:
    """A value as the user wrote it: `'sideways'`, `1.10`, `true`, `a list`, `nothing`."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"'{value}'" if "'" not in value else f'"{value}"'
    if value is None:
        return written if written and written not in ("", "~") else "nothing"
    return written or _yaml_word(value)


def described(value: Any, written: str | None) -> str:
    """The value with what it is: `the number 1.10`, `the string 'x'`, `a mapping`."""
    if isinstance(value, bool):
        return f"the boolean {written or _yaml_word(value)}"
    if isinstance(value, int | float):
        return f"the number {written or value}"
    if isinstance(value, str):
        return f"the string {shown(value, written)}"
    if value is None:
        return "nothing (an empty value)"
    return shown(value, written)


def describe_error(
    model: type[BaseModel], error: Any, written: str | None = None
) -> tuple[str, str]:
    """(message, hint) for one pydantic error (an item of `ValidationError.errors()`).

    `written` is the offending scalar exactly as written in the file, when known.
    `extra_forbidden` and `missing` are worded by the caller (they are located
    at a key, not a value).
    """
    loc: Loc = tuple(error["loc"])
    kind = str(error["type"])
    value = error.get("input")
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, "), ""
    if kind == "extra_forbidden":
        key = str(loc[-1])
        keys = allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(keys))}"
        return f"unknown key '{key}'", hint
    if kind == "missing":
        return f"missing required key '{loc[-1]}'", ""
    if kind == "literal_error" or kind.startswith("bool_"):
        choices = choices_at(model, loc) if kind == "literal_error" else ["true", "false"]
        # a number or boolean written in quotes: `version: "1"`
        hint = "write it without quotes" if isinstance(value, str) and value in choices else ""
        if len(choices) == 1:
            return f"must be {choices[0]}, not {shown(value, written)}", hint
        return f"{shown(value, written)} is not one of: {', '.join(choices)}", hint
    if kind == "string_type":
        message = f"expected a string, got {described(value, written)}"
        if isinstance(value, bool | int | float) and not isinstance(value, str):
            text = written or _yaml_word(value)
            hint = f'quote it: "{text}"'
            if text != _yaml_word(value):
                hint += f"; unquoted, {text} reads as the number {value}"
            return message, hint
        return message, ""
    if kind == "list_type":
        hint = "write [a, b] or one '- a' per line"
        return f"expected a list, got {described(value, written)}", hint
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        keys = allowed_keys(model, loc)
        hint = f"keys: {', '.join(keys)}" if keys else ""
        return f"expected a mapping, got {described(value, written)}", hint
    if kind.startswith(("datetime", "date")):
        example = "a date and time such as 2026-11-30T12:00:00Z"
        return f"expected {example}, got {described(value, written)}", ""
    if kind.startswith("int_"):
        return f"expected a whole number, got {described(value, written)}", ""
    return f"{shown(value, written)} is not valid here", ""
