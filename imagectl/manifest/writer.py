"""Surgical write-back: change the digest of a pinned base reference, and nothing else.

A round-trip dump by ruamel.yaml may reflow long lines, re-indent sequences or
change quoting. Instead, the composer's marks give the exact character span of
each base reference scalar (``bases.<name>.ref``, and ``from:`` of a family or an
image); inside that span only the ``sha256:…`` characters are replaced, so every
comment, quote, blank line and flow mapping stays byte-identical. The new text is
parsed again and must equal the old document with exactly those references changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode

from imagectl.domain.reference import InvalidReferenceError, parse_reference
from imagectl.errors import Location, ManifestError, Problem
from imagectl.fsutil import atomic_write
from imagectl.manifest.refs import lower_host
from imagectl.manifest.yamlsource import format_key_path

_ANY = "*"
REF_PATHS: tuple[tuple[str, ...], ...] = (
    ("bases", _ANY, "ref"),
    ("families", _ANY, "from"),
    ("families", _ANY, "images", _ANY, "from"),
)


@dataclass(frozen=True)
class RefSite:
    """A base reference scalar in a manifest file.

    Attributes:
        path: its key path (``("bases", "debian", "ref")``).
        value: the reference as the YAML loader reads it.
        start: offset of the scalar's first character in the text (quotes included).
        end: offset just after the scalar.
        line: 1-based line of `start`.
        col: 1-based column of `start`.
    """

    path: tuple[str, ...]
    value: str
    start: int
    end: int
    line: int
    col: int


@dataclass(frozen=True)
class DigestChange:
    """One reference rewritten: where, and from which digest to which."""

    site: RefSite
    old_digest: str
    new_digest: str


def _mapping_items(node: Node) -> Iterator[tuple[str, Node]]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                yield str(key.value), value


def _walk(node: Node, pattern: tuple[str, ...], path: tuple[str, ...]) -> Iterator[RefSite]:
    if not pattern:
        if isinstance(node, ScalarNode):
            mark, end = node.start_mark, node.end_mark
            yield RefSite(
                path, str(node.value), mark.index, end.index, mark.line + 1, mark.column + 1
            )
        return
    for key, child in _mapping_items(node):
        if pattern[0] in (_ANY, key):
            yield from _walk(child, pattern[1:], (*path, key))


def _compose(text: str, display: str) -> Node | None:
    try:
        node: Node | None = YAML(typ="safe", pure=True).compose(text)
    except YAMLError as exc:
        raise ManifestError([Problem(Location(display), f"cannot parse the file: {exc}")]) from None
    return node


def _load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def find_ref_sites(text: str, display: str = "<manifest>") -> list[RefSite]:
    """Every base reference scalar of a manifest file's text, in text order."""
    root = _compose(text, display)
    if root is None:
        return []
    sites = {(s.start, s.end): s for p in REF_PATHS for s in _walk(root, p, ())}
    return [sites[key] for key in sorted(sites)]


def _refuse(display: str, site: RefSite, why: str) -> ManifestError:
    where = Location(display, site.line, site.col)
    hint = "write the reference as one plain or quoted scalar, e.g. ref: host/repo:tag@sha256:…"
    return ManifestError(
        [
            Problem(
                where,
                f"cannot rewrite the digest in place: {why}",
                format_key_path(site.path),
                hint,
            )
        ]
    )


def _set(data: Any, path: tuple[str, ...], value: str) -> None:
    for depth, key in enumerate(path):
        actual = next(k for k in data if str(k) == key)  # `123:` loads as an int key
        if depth == len(path) - 1:
            data[actual] = value
        else:
            data = data[actual]


def rewrite_digests(
    text: str, updates: Mapping[str, str], display: str = "<manifest>"
) -> tuple[str, list[DigestChange]]:
    """Point pinned references at new digests, changing only the digest characters.

    Args:
        text: the file's text.
        updates: reference as written (``host/repo:tag@sha256:old``) -> the new digest.
        display: the file name for messages.

    Returns:
        The new text (identical when nothing matched) and the changes made.

    Raises:
        ManifestError: a matching reference cannot be rewritten safely (an alias, an
            escaped or split digest), or the result would not parse to the same
            document with only those references changed.
    """
    changes: list[DigestChange] = []
    for site in find_ref_sites(text, display):
        new_digest = updates.get(lower_host(site.value))  # the loader lowercases hosts
        if new_digest is None:
            continue
        try:
            old_digest = parse_reference(site.value).digest
            parse_reference(site.value).with_digest(new_digest)
        except InvalidReferenceError as exc:
            raise _refuse(display, site, str(exc)) from None
        if old_digest is None:
            raise _refuse(display, site, "the reference is not pinned by digest")
        if old_digest != new_digest:
            changes.append(DigestChange(site, old_digest, new_digest))
    if not changes:
        return text, []
    result = text
    for change in sorted(changes, key=lambda c: c.site.start, reverse=True):
        span = result[change.site.start : change.site.end]
        if span.count(change.old_digest) != 1:
            raise _refuse(display, change.site, "the digest is not written literally there")
        span = span.replace(change.old_digest, change.new_digest)
        result = result[: change.site.start] + span + result[change.site.end :]
    expected = _load(text)
    for change in changes:
        _set(
            expected,
            change.site.path,
            change.site.value.replace(change.old_digest, change.new_digest),
        )
    if _load(result) != expected:
        raise _refuse(display, changes[0].site, "the rewritten file reads differently")
    return result, changes


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically; its mode is kept."""
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> ManifestError:
    return ManifestError([Problem(Location(str(path)), f"cannot write: {exc.strerror or exc}")])


def read_text(path: Path) -> str:
    """A manifest file's text exactly as stored (line endings kept)."""
    return path.read_bytes().decode("utf-8")
