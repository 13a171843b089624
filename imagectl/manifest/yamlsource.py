"""Read one YAML file into plain data plus the position of every key and value.

ruamel.yaml's round-trip loader keeps line/column marks on its containers; we
turn the document into plain dicts/lists (what pydantic validates) and keep a
map from key paths to positions, so that any later problem can be reported as
`file:line:col: key.path: message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

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
    """A YAML document as plain data, with positions for its keys and values."""

    path: Path
    display: str
    data: Any
    key_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    value_pos: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    containers: set[KeyPath] = field(default_factory=set)

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


class _Converter:
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
                    format_key_path(path),
                    "YAML anchors/aliases must not multiply the document",
                )
            )
        if depth > MAX_DEPTH:
            raise YamlSourceError(
                Problem(
                    self.source.location(path),
                    f"nesting deeper than {MAX_DEPTH} levels",
                    format_key_path(path),
                )
            )
        if isinstance(node, CommentedMap | CommentedSeq):
            self.source.containers.add(path)
        if isinstance(node, CommentedMap):
            out: dict[Any, Any] = {}
            for key in node:
                child = (*path, str(key))
                kl, kc = node.lc.key(key)
                self.source.key_pos[child] = (kl + 1, kc + 1)
                vl, vc = node.lc.value(key)
                self.source.value_pos[child] = (vl + 1, vc + 1)
                out[key if isinstance(key, str) else str(key)] = self.convert(
                    node[key], child, depth + 1
                )
            return out
        if isinstance(node, CommentedSeq):
            items: list[Any] = []
            for index, value in enumerate(node):
                child = (*path, index)
                il, ic = node.lc.item(index)
                self.source.value_pos[child] = (il + 1, ic + 1)
                self.source.key_pos[child] = (il + 1, ic + 1)
                items.append(self.convert(value, child, depth + 1))
            return items
        if isinstance(node, str):
            return str(node)
        if node is None or isinstance(node, bool):
            return node
        # ruamel's ScalarInt/ScalarFloat subclasses become plain values
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return str(node)


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
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    source = YamlSource(path=path, display=display, data=None)
    try:
        document = yaml.load(text)
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
    source.data = _Converter(source).convert(document, (), 0)
    return source
