"""Read one YAML file into plain data plus the position of every key and value.

ruamel.yaml's (C) safe loader gives plain dicts/lists, which pydantic validates;
its composer's node marks give the line/column of every key and value, so that
any later problem can be reported as `file:line:col: key.path: message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from imagectl.errors import Location, Problem

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64


class YamlSourceError(Exception):
    """The file could not be read as YAML; carries one located problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class YamlSource:
    """A YAML document as plain data, with positions for its keys and values.

    Data comes from ruamel's fast (C) safe loader; positions from its composer,
    computed when a location is first asked for.
    """

    path: Path
    display: str
    data: Any
    text: str = ""
    key_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    value_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    containers: set[KeyPath] = field(default_factory=set)
    positioned: bool = False

    def _ensure_positions(self) -> None:
        if self.positioned:
            return
        self.positioned = True
        try:
            node = YAML(typ="safe", pure=False).compose(self.text)
        except Exception:  # the loader accepted it; positions are best effort
            return
        if node is not None:
            self._walk_nodes(node, (), 0, set())

    def _walk_nodes(self, node: Node, path: KeyPath, depth: int, seen: set[int]) -> None:
        # an alias is the same node object again: position it once, never expand it
        if depth > MAX_DEPTH or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            self.containers.add(path)
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                mark = key_node.start_mark
                self.key_pos.setdefault(child, (mark.line + 1, mark.column + 1))
                vmark = value_node.start_mark
                self.value_pos.setdefault(child, (vmark.line + 1, vmark.column + 1))
                self._walk_nodes(value_node, child, depth + 1, seen)
        elif isinstance(node, SequenceNode):
            self.containers.add(path)
            for index, item in enumerate(node.value):
                child = (*path, index)
                mark = item.start_mark
                self.key_pos.setdefault(child, (mark.line + 1, mark.column + 1))
                self.value_pos.setdefault(child, (mark.line + 1, mark.column + 1))
                self._walk_nodes(item, child, depth + 1, seen)

    def location(self, path: KeyPath, *, key: bool = False) -> Location:
        """The best-known location for `path`: its key or value, else its nearest parent.

        A mapping or list is located at its key: that is where a reader looks.
        """
        self._ensure_positions()
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
    yaml = YAML(typ="safe", pure=False)  # the C loader when ruamel.yaml.clib is installed
    yaml.allow_duplicate_keys = False
    source = YamlSource(path=path, display=display, data=None, text=text)
    try:
        # one parse: the node tree gives both the data and every position
        node = yaml.compose(text)
        document = yaml.constructor.construct_document(node) if node is not None else None
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
    source.positioned = True
    if node is not None:
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
