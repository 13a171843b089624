"""Read one YAML file into plain data plus the position of every key and value.

ruamel.yaml's safe loader gives plain dicts/lists, which pydantic validates;
its composer's node marks give the line/column of every key and value, so that
any later problem can be reported as `file:line:col: key.path: message`.

Two parsers, one result: the C parser (libyaml, fast) is tried first. libyaml
scans YAML 1.1 and refuses some valid YAML 1.2 (a `:` inside a plain scalar in
flow style, as in `{ref: registry.example:5000/debian:12}`); whenever it
refuses a document, ruamel's pure-Python parser, the one its round-trip loader
uses, reads it again and has the last word, its error included. Both share
ruamel's YAML 1.2 resolver and constructor, so what loads is the same data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from imagectl.errors import Location, Problem

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64
BOM = "\ufeff"
_VERSION_DIRECTIVE = re.compile(r"^%YAML\b", re.MULTILINE)


class YamlSourceError(Exception):
    """The file could not be read as YAML; carries one located problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class YamlSource:
    """A YAML document as plain data, with positions for its keys and values."""

    path: Path
    display: str
    data: Any
    text: str = ""
    key_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    value_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    # the character span of each scalar value in `text`: the value exactly as written
    spans: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    containers: set[KeyPath] = field(default_factory=set)
    merges: bool = False  # the text may hold merge keys (`<<:`)

    def _walk_nodes(self, node: Node, path: KeyPath, depth: int, seen: set[int]) -> None:
        # an alias is the same node object again: position it once, never expand it
        if depth > MAX_DEPTH or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            self.containers.add(path)
            self._walk_mapping(node, path, depth, seen)
        elif isinstance(node, SequenceNode):
            self.containers.add(path)
            for index, item in enumerate(node.value):
                child = (*path, index)
                mark = item.start_mark
                self.key_pos.setdefault(child, (mark.line + 1, mark.column + 1))
                self._value(child, item)
                self._walk_nodes(item, child, depth + 1, seen)

    def _walk_mapping(self, node: MappingNode, path: KeyPath, depth: int, seen: set[int]) -> None:
        # The constructor has flattened merge keys (`<<: *defaults`) into `node.value`:
        # merged pairs first, the mapping's own after. Only the last pair of a key holds
        # its value: own keys win, and a merged key is located where the anchor writes it.
        # Document order is kept, so an anchor's content is located under the anchor.
        merged = self.merges  # else no key repeats: skip the bookkeeping
        last = {str(k.value): i for i, (k, _) in enumerate(node.value)} if merged else {}
        for index, (key_node, value_node) in enumerate(node.value):
            name = str(key_node.value)
            if merged and last[name] != index:
                continue
            child = (*path, name)
            mark = key_node.start_mark
            self.key_pos.setdefault(child, (mark.line + 1, mark.column + 1))
            self._value(child, value_node)
            self._walk_nodes(value_node, child, depth + 1, seen)

    def _value(self, path: KeyPath, node: Node) -> None:
        mark = node.start_mark
        self.value_pos.setdefault(path, (mark.line + 1, mark.column + 1))
        if isinstance(node, ScalarNode):
            self.spans.setdefault(path, (mark.index, node.end_mark.index))

    def written(self, path: KeyPath) -> str | None:
        """The scalar at `path` exactly as written in the file (`1.10`, `'x'`), if known."""
        span = self.spans.get(path)
        if span is None:
            return None
        return self.text[span[0] : span[1]].strip() or None

    def location(self, path: KeyPath, *, key: bool = False) -> Location:
        """The best-known location for `path`: its key or value, else its nearest parent.

        A mapping or list is located at its key: that is where a reader looks.
        """
        table = self.key_pos if key or path in self.containers else self.value_pos
        probe = path
        while True:
            pos = table.get(probe) or self.value_pos.get(probe) or self.key_pos.get(probe)
            if pos is not None:
                return Location(self.display, pos[0], pos[1])
            if not probe:
                return Location(self.display, 1, 1)
            probe = probe[:-1]


def format_key_path(path: KeyPath) -> str:
    """`("families", "web", "tags", 2)` -> `families.web.tags[2]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _mark_location(display: str, mark: Any) -> Location:
    if mark is None:
        return Location(display, 1, 1)
    return Location(display, int(mark.line) + 1, int(mark.column) + 1)


def _parse(text: str, *, pure: bool) -> tuple[Node | None, Any]:
    """One parse: the node tree (for positions) and the data built from it."""
    yaml = YAML(typ="safe", pure=pure)
    yaml.allow_duplicate_keys = False
    node = yaml.compose(text)
    document = yaml.constructor.construct_document(node) if node is not None else None
    return node, document


def parse_document(text: str) -> tuple[Node | None, Any]:
    """Parse `text` as the round-trip loader would: the C parser if it can, else pure Python.

    Raises what ruamel raises for a document neither parser reads (the pure
    parser's error: it is the one that speaks YAML 1.2).
    """
    if _VERSION_DIRECTIVE.search(text):  # libyaml ignores it; `%YAML 1.1` changes what loads
        return _parse(text, pure=True)
    try:
        return _parse(text, pure=False)
    except (ConstructorError, RecursionError):
        raise  # raised after parsing: the pure parser would build the same and fail the same
    except Exception:  # libyaml refused: YAML 1.2 that 1.1 does not allow, or an error
        return _parse(text, pure=True)


def _decode(raw: bytes, display: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlSourceError(
            Problem(
                Location(display, line, col), "file is not valid UTF-8", hint="save it as UTF-8"
            )
        ) from None
    # a byte order mark is invisible in editors: columns are counted without it
    return text.removeprefix(BOM)


def load_yaml(path: Path, display: str) -> YamlSource:
    """Load `path`; raise YamlSourceError with a located problem if it is not valid YAML."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlSourceError(
            Problem(Location(display), f"cannot read file: {exc.strerror or exc}")
        ) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise YamlSourceError(
            Problem(Location(display), f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
        )
    text = _decode(raw, display)
    source = YamlSource(path=path, display=display, data=None, text=text)
    try:
        node, document = parse_document(text)
    except DuplicateKeyError as exc:
        key = str(exc.problem or "duplicate key").strip()
        raise YamlSourceError(
            Problem(_mark_location(display, exc.problem_mark), key.replace("\n", " "))
        ) from None
    except MarkedYAMLError as exc:
        message = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
        raise YamlSourceError(
            Problem(_mark_location(display, exc.problem_mark), f"YAML syntax error: {message}")
        ) from None
    except RecursionError:
        raise YamlSourceError(
            Problem(Location(display, 1, 1), f"nesting deeper than {MAX_DEPTH} levels")
        ) from None
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad tags)
        raise YamlSourceError(
            Problem(Location(display, 1, 1), f"YAML error: {exc}".splitlines()[0])
        ) from None
    if node is not None:
        source.merges = "<<" in text
        source._walk_nodes(node, (), 0, set())
    source.data = _Plain(source).convert(document, (), 0)
    return source


class _Plain:
    """Normalise safe-loaded data (dates to text) and bound its size and depth."""

    def __init__(self, source: YamlSource) -> None:
        self.source = source
        self.nodes = 0

    def convert(self, node: Any, path: KeyPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlSourceError(
                Problem(
                    self.source.location(path),
                    f"document too large after expanding aliases (over {MAX_NODES} nodes)",
                    hint="YAML anchors/aliases must not multiply the document",
                )
            )
        if depth > MAX_DEPTH:
            raise YamlSourceError(
                Problem(self.source.location(path), f"nesting deeper than {MAX_DEPTH} levels")
            )
        if isinstance(node, dict):
            return {
                (k if isinstance(k, str) else str(k)): self.convert(v, (*path, str(k)), depth + 1)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [self.convert(v, (*path, i), depth + 1) for i, v in enumerate(node)]
        if node is None or isinstance(node, bool | int | float | str):
            return node
        return str(node)
