"""Load the manifest tree: root file, `include` globs, pydantic validation with positions.

Every problem becomes a located `Problem`; all problems found are reported at
once in one `ManifestError`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from imagectl.errors import Location, ManifestError, Problem
from imagectl.manifest.messages import describe_error, described
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


def _problem_from_error(source: YamlSource, model: type[BaseModel], error: Any) -> Problem:
    loc: KeyPath = tuple(error["loc"])
    message, hint = describe_error(model, error, source.written(loc))
    if error["type"] == "extra_forbidden":
        return Problem(source.location(loc, key=True), message, format_key_path(loc), hint)
    if error["type"] == "missing":
        return Problem(source.location(loc[:-1], key=True), message, format_key_path(loc))
    return Problem(source.location(loc), message, format_key_path(loc), hint)


def _validate(
    source: YamlSource, model: type[IncludedFile]
) -> tuple[IncludedFile | None, list[Problem]]:
    data = source.data
    if data is None:
        if model is RootFile:
            hint = "start it with `version: 1` and `registry: HOST/NAMESPACE`"
            return None, [Problem(source.location(()), "the manifest is empty", hint=hint)]
        data = {}  # an empty included file adds nothing
    if not isinstance(data, dict):
        kind = described(data, source.written(()))
        return None, [Problem(source.location(()), f"the file must hold a mapping, not {kind}")]
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
