"""Tag templates: checking, rendering, and the forward-only rule (docs/design.md section 3).

A template is literal text with fields in braces, e.g. ``{major}.{minor}`` or
``{version}-bookworm``. The tag rendered from the template ``{version}`` is the
immutable tag; every other tag floats and moves forward only.

Pure: no I/O, no clock; the caller supplies the date and commit.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from imagectl.domain.versions import version_fields, version_key
from imagectl.errors import PlanError

FIELDS: tuple[str, ...] = (
    "version",
    "upstream",
    "major",
    "minor",
    "patch",
    "revision",
    "date",
    "sha",
    "base_tag",
)
IMMUTABLE_TEMPLATE = "{version}"
OCI_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

# Every field non-empty, so a template is only refused for what it always renders.
_SAMPLE = {
    **version_fields("3.12.7-r2"),
    "date": "20260101",
    "sha": "0123abc",
    "base_tag": "bookworm-slim",
}

# Why a field can render empty, for error messages.
_EMPTY_WHY = {
    "sha": "the git-ops commit is unknown (not run inside a git repository?)",
    "base_tag": "the base reference has no tag (is it pinned by digest only?)",
    "revision": "the version has no revision (bump: patch)",
    "date": "the build date is unknown",
}


class TagError(PlanError):
    """A tag template rendered to something that is not a valid OCI tag."""


@dataclass(frozen=True)
class TagContext:
    """What a build knows when its tags are rendered; empty strings mean unknown."""

    version: str
    date: str
    sha: str
    base_tag: str


@dataclass(frozen=True)
class RenderedTag:
    """One tag of a build; the immutable one is never moved once pushed."""

    name: str
    immutable: bool
    template: str = field(default="", compare=False)


def _parse(template: str) -> tuple[list[str], list[str]]:
    """The fields a template uses and the problems with its syntax."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [], [f"malformed braces in tag template {template!r}: {exc}"]
    fields: list[str] = []
    errors: list[str] = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            errors.append(f"format specs are not supported in tag template field {{{shown}}}")
        elif name not in FIELDS:
            errors.append(f"unknown template field {{{name}}}; known: {_known()}")
        else:
            fields.append(name)
    return fields, errors


@lru_cache(maxsize=1024)
def _parse_once(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`_parse`, memoized: a fleet renders the same few templates for every image."""
    fields, errors = _parse(template)
    return tuple(fields), tuple(errors)


def _empty(field: str) -> str:
    reason = _EMPTY_WHY.get(field)
    return f"{{{field}}} is empty" + (f": {reason}" if reason else "")


def _known() -> str:
    return ", ".join(f"{{{name}}}" for name in FIELDS)


def check_template(template: str) -> list[str]:
    """Checks one tag template.

    Args:
        template: e.g. ``{major}.{minor}`` or ``{version}-bookworm``.

    Returns:
        Error messages: unknown fields, malformed braces, or a template whose
        rendering (with every field filled in) is not a valid OCI tag. Empty
        when the template is fine.
    """
    _fields, errors = _parse(template)
    if errors:
        return errors
    rendered = template.format_map(_SAMPLE)
    if not OCI_TAG.fullmatch(rendered):
        return [
            f"tag template {template!r} does not render a valid OCI tag "
            f"(e.g. {rendered!r}); a tag is 1-128 of [A-Za-z0-9_.-] "
            "and does not start with '.' or '-'"
        ]
    return []


def check_template_list(
    templates: Sequence[str], allow_latest: bool
) -> list[tuple[int | None, str]]:
    """Checks an image's list of tag templates as a whole.

    Each template on its own is checked by `check_template`.

    Args:
        templates: the image's ``tags``.
        allow_latest: whether the image sets ``allow_latest: true``.

    Returns:
        Problems as (index in the list, or None for the whole list, message).
    """
    problems: list[tuple[int | None, str]] = []
    first: dict[str, int] = {}
    for index, template in enumerate(templates):
        if template in first:
            problems.append(
                (index, f"duplicate tag template {template!r} (also at index {first[template]})")
            )
            continue
        first[template] = index
        if template == "latest" and not allow_latest:
            problems.append((index, "'latest' is not allowed (set allow_latest: true)"))
    if IMMUTABLE_TEMPLATE not in first:
        problems.append((None, 'tags must include "{version}" (the immutable tag)'))
    return problems


def render_tags(templates: Sequence[str], ctx: TagContext) -> list[RenderedTag]:
    """Renders an image's tags for one build.

    Args:
        templates: the image's ``tags``; must include ``{version}``.
        ctx: the build's version, UTC date (``YYYYMMDD``), commit and base tag.

    Returns:
        The tags in template order without duplicates (the first is kept);
        the tag named like the one rendered from ``{version}`` is immutable.

    Raises:
        TagError: a template is invalid, uses a field that is empty for this
            build (e.g. ``{sha}`` outside git), renders an invalid OCI tag, or
            ``{version}`` is missing.
    """
    return list(_render_once(tuple(templates), ctx))


@lru_cache(maxsize=4096)
def _render_once(templates: tuple[str, ...], ctx: TagContext) -> tuple[RenderedTag, ...]:
    """`render_tags`, memoized: pure, and a fleet renders the same few (templates, context)
    pairs for every image (the version, date, commit and base tag repeat)."""
    if IMMUTABLE_TEMPLATE not in templates:
        raise TagError('tags must include "{version}" (the immutable tag)')
    values = {
        **version_fields(ctx.version),
        "date": ctx.date,
        "sha": ctx.sha,
        "base_tag": ctx.base_tag,
    }
    immutable = ctx.version
    tags: list[RenderedTag] = []
    seen: set[str] = set()
    for template in templates:
        fields, errors = _parse_once(template)
        if errors:
            raise TagError("; ".join(errors))
        name = template.format_map(values)
        # An empty field yields a wrong tag even when it is valid OCI ("sha-").
        empty = [_empty(field) for field in dict.fromkeys(fields) if not values[field]]
        if empty:
            raise TagError(f"tag template {template!r} cannot be rendered: {'; '.join(empty)}")
        if not OCI_TAG.fullmatch(name):
            raise TagError(f"tag template {template!r} rendered {name!r}, not a valid OCI tag")
        if name not in seen:
            seen.add(name)
            tags.append(RenderedTag(name=name, immutable=name == immutable, template=template))
    return tuple(tags)


def immutable_conflict(
    tag: str, template: str, repository: str, history: Mapping[str, str]
) -> str | None:
    """Why a floating tag must not move: it is, or was, the immutable tag of a build.

    Args:
        tag: a floating tag rendered for the new build.
        template: the template it was rendered from.
        repository: the image's repository.
        history: every version tag the repository ever had -> its digest ("" unknown).

    Returns:
        An error message naming the tag, its holder and the template, or None.
    """
    if tag not in history:
        return None
    return conflict_message(tag, template, repository, tag, history[tag])


def conflict_message(
    tag: str, template: str, repository: str, holder_version: str, holder_digest: str
) -> str:
    """The error for a floating tag that names an immutable tag (docs/design.md section 3)."""
    held_by = f"build {holder_version}" + (f" ({holder_digest})" if holder_digest else "")
    return (
        f"tag {tag!r}, rendered from the template {template!r}, is the immutable tag of "
        f"{held_by} of {repository}; an immutable tag is never moved: remove {template!r} "
        'from the image\'s tags or render it differently (e.g. "v{upstream}")'
    )


def may_move_floating(new_version: str, holder_version: str | None) -> bool:
    """The forward-only rule for floating tags.

    Args:
        new_version: the version being built.
        holder_version: the version the floating tag points at now, None if
            the tag does not exist.

    Returns:
        True when the tag may move to ``new_version``: nobody holds it, or its
        holder is not newer (rebuilding ``1.3.9`` never takes ``1`` from ``1.4.2``).
    """
    if holder_version is None:
        return True
    return version_key(holder_version) <= version_key(new_version)
