"""Load the manifest tree: root file, `include` globs, pydantic validation with positions.

Every problem becomes a located `Problem`; all problems found are reported at
once in one `ManifestError`.
"""

from __future__ import annotations

import difflib
import glob
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from imagectl.errors import Location, ManifestError, Problem
from imagectl.manifest.models import IncludedFile, Manifest, RootFile
from imagectl.manifest.yamlsource import (
    KeyPath,
    YamlSource,
    YamlSourceError,
    format_key_path,
    load_yaml,
)

MAX_INCLUDED_FILES = 1000


@dataclass
class LoadedFile:
    """One validated manifest file."""

    source: YamlSource
    model: IncludedFile


def display_path(path: Path, root_dir: Path) -> str:
    """A path as shown in messages: relative to the root manifest's directory when inside it."""
    try:
        return os.path.relpath(path, root_dir) if path.is_relative_to(root_dir) else str(path)
    except ValueError:
        return str(path)


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated wrappers from a type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model accepts at `loc` (the mapping that holds an unknown key)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return []
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        if origin in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _problem_from_error(source: YamlSource, model: type[BaseModel], error: Any) -> Problem:
    loc: KeyPath = tuple(error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = ""
    if kind == "extra_forbidden":
        key = str(loc[-1])
        keys = allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        message = f"unknown key '{key}'"
        hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(keys))}"
        return Problem(source.location(loc, key=True), message, format_key_path(loc), hint)
    if kind == "missing":
        message = f"missing required key '{loc[-1]}'"
        return Problem(source.location(loc[:-1], key=True), message, format_key_path(loc))
    if loc and loc[-1] == "version" and kind in ("string_type", "literal_error"):
        given = error.get("input")
        if isinstance(given, float | int) and kind == "string_type":
            written = _written(source, loc) or str(given)
            message = f"version must be a string, got the number {given}"
            hint = f'quote it: version: "{written}"'
            if written != str(given):
                hint += f"; unquoted, {written} is the number {given}"
    return Problem(source.location(loc), message, format_key_path(loc), hint)


def _written(source: YamlSource, loc: KeyPath) -> str | None:
    """The plain scalar at `loc` exactly as written in the file (e.g. `1.10`), if known."""
    location = source.location(loc)
    lines = source.text.splitlines()
    if not 0 < location.line <= len(lines) or location.col <= 0:
        return None
    token = lines[location.line - 1][location.col - 1 :].split("#", 1)[0].strip()
    return token if token and token.replace(".", "").replace("_", "").isalnum() else None


def _validate(
    source: YamlSource, model: type[IncludedFile]
) -> tuple[IncludedFile | None, list[Problem]]:
    data = source.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [Problem(source.location(()), "the file must hold a YAML mapping")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_problem_from_error(source, model, e) for e in exc.errors()]


def _inside(path: Path, boundary: Path) -> bool:
    return path.resolve().is_relative_to(boundary.resolve())


class _TreeLoader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_dir = root.parent
        self.problems: list[Problem] = []
        self.files: list[LoadedFile] = []
        self.seen: set[Path] = set()
        self.globs: list[tuple[str, str]] = []  # (directory, pattern): facts for the cache

    def load(self, path: Path, model: type[IncludedFile], stack: tuple[Path, ...]) -> None:
        display = display_path(path, self.root_dir)
        try:
            source = load_yaml(path, display)
        except YamlSourceError as exc:
            self.problems.append(exc.problem)
            return
        parsed, problems = _validate(source, model)
        self.problems.extend(problems)
        if parsed is not None:
            self.files.append(LoadedFile(source, parsed))
        else:
            # keep reporting: follow the includes of an invalid file when they are readable
            raw = source.data.get("include") if isinstance(source.data, dict) else None
            if not (isinstance(raw, list) and all(isinstance(p, str) for p in raw)):
                return
            parsed = IncludedFile(include=raw)
        self._follow_includes(source, parsed, (*stack, path.resolve()))

    def _follow_includes(
        self, source: YamlSource, parsed: IncludedFile, stack: tuple[Path, ...]
    ) -> None:
        base = source.path.parent
        for index, pattern in enumerate(parsed.include):
            where = source.location(("include", index))
            key_path = f"include[{index}]"
            if os.path.isabs(pattern):
                self.problems.append(
                    Problem(where, "include paths are relative to the including file", key_path)
                )
                continue
            self.globs.append((str(base), pattern))
            matches = sorted(glob.glob(str(base / pattern), recursive=True))
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                self.problems.append(Problem(where, f"'{pattern}' matches no file", key_path))
                continue
            for match in matches:
                target = Path(match)
                if not _inside(target, self.root_dir):
                    shown = os.path.relpath(os.path.normpath(target), self.root_dir)
                    message = f"'{pattern}' matches '{shown}', which is outside the repository"
                    if not shown.startswith(".."):  # lexically inside: a symlink leads out
                        message = (
                            f"'{pattern}' matches '{shown}', which resolves through a "
                            f"symlink to '{target.resolve()}', outside the repository"
                        )
                    self.problems.append(Problem(where, message, key_path))
                    continue
                resolved = target.resolve()
                if resolved in stack:
                    chain = " -> ".join(display_path(p, self.root_dir.resolve()) for p in stack)
                    self.problems.append(
                        Problem(
                            where,
                            f"include cycle: {chain} -> "
                            f"{display_path(resolved, self.root_dir.resolve())}",
                            key_path,
                        )
                    )
                    continue
                if resolved in self.seen:
                    continue  # included twice (two globs): loaded once
                if len(self.seen) >= MAX_INCLUDED_FILES:
                    self.problems.append(
                        Problem(where, f"more than {MAX_INCLUDED_FILES} included files", key_path)
                    )
                    return
                self.seen.add(resolved)
                self.load(target, IncludedFile, stack)


def load_manifest(path: Path) -> Manifest:
    """Load, validate and resolve the manifest rooted at `path`.

    Raises:
        ManifestError: with every problem found, each located.
    """
    from imagectl.manifest import cache
    from imagectl.manifest.resolve import resolve_manifest

    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise ManifestError(
            [Problem(Location(str(path)), "manifest file not found", hint="pass --file PATH")]
        )
    cached = cache.load(path)
    if cached is not None:
        return cached
    tree = _TreeLoader(path)
    tree.seen.add(path.resolve())
    tree.load(path, RootFile, ())
    if tree.problems or not tree.files or not isinstance(tree.files[0].model, RootFile):
        raise ManifestError(tree.problems)
    facts: dict[str, dict[str, bool]] = {}
    manifest, problems = resolve_manifest(path, tree.files, facts)
    if problems:
        raise ManifestError(problems)
    assert manifest is not None
    cache.save(manifest, tree.globs, facts)
    return manifest
