"""Which floating tags belong to one version only, and so go when it is deleted.

Templates such as ``{version}-{base_tag}``, ``{date}`` or ``{sha}`` give every
build a tag of its own. Such a tag protects nothing: it goes with its version. A
tag protects its holder only when it is shared between versions: rendered from a
template that more than one version renders the same way (``{major}.{minor}``,
``latest``, a ``{date}`` tag of two builds on one day), or when no template of the
image renders it (a tag set by hand, or by a template since removed).

Pure: each version's tags are rendered again from its labels (created date,
revision, base name), with the same rules `plan` uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imagectl.domain.tags import IMMUTABLE_TEMPLATE, TagContext, TagError, render_tags
from imagectl.errors import PlanError
from imagectl.plan.plan import tag_of
from imagectl.prune.policy import VersionInfo

# One build and its neighbours: the next build of each part of the version, each
# on another day from another commit (the base tag stays: it is shared by design).
_SAMPLE = {
    "patch": ("1.4.3", ("1.4.4", "1.5.3", "2.4.3")),
    "revision": ("1.4.3-r2", ("1.4.3-r3", "1.4.4-r2", "1.5.3-r2", "2.4.3-r2")),
}
_SAMPLE_CTX = TagContext(version="", date="20260101", sha="0123abc", base_tag="bookworm")
_OTHER_CTX = TagContext(version="", date="20260102", sha="4567def", base_tag="bookworm")


def _render(template: str, ctx: TagContext) -> str | None:
    """The tag `template` renders for `ctx`; None when a field it uses is unknown."""
    try:
        rendered = render_tags((IMMUTABLE_TEMPLATE, template), ctx)
    except (TagError, PlanError):
        return None
    return rendered[-1].name


def per_build(template: str, bump: str) -> bool:
    """Whether `template` renders a tag of each build's own (no neighbour renders it).

    ``{version}-{base_tag}``, ``{date}``, ``{sha}``, ``{major}.{minor}-{date}``: yes.
    ``{major}.{minor}``, ``{base_tag}``, ``latest``; ``{upstream}`` under ``bump:
    revision``: no (they are shared by the versions of a line).
    """
    version, neighbours = _SAMPLE.get(bump, _SAMPLE["patch"])
    mine = _render(template, _with(_SAMPLE_CTX, version))
    if mine is None:
        return False
    return all(_render(template, _with(_OTHER_CTX, other)) != mine for other in neighbours)


def _with(ctx: TagContext, version: str) -> TagContext:
    return TagContext(version=version, date=ctx.date, sha=ctx.sha, base_tag=ctx.base_tag)


def _context(info: VersionInfo) -> TagContext:
    """What the build of `info` knew when it rendered its tags, read back from its labels."""
    return TagContext(
        version=info.version,
        date=info.created.strftime("%Y%m%d") if info.created else "",
        sha=(info.revision or "")[:7],
        base_tag=tag_of(info.base_name) if info.base_name else "",
    )


@dataclass(frozen=True)
class _Rendered:
    tags: frozenset[str]  # every tag its templates render
    own: frozenset[str]  # those from per-build templates


def _rendered(info: VersionInfo, templates: Sequence[str], kinds: Mapping[str, bool]) -> _Rendered:
    ctx = _context(info)
    every: set[str] = set()
    own: set[str] = set()
    for template in templates:
        if template == IMMUTABLE_TEMPLATE:
            continue
        tag = _render(template, ctx)
        if tag is None:
            continue
        every.add(tag)
        if kinds[template]:
            own.add(tag)
    return _Rendered(frozenset(every), frozenset(own))


def own_tags(
    templates: Sequence[str],
    bump: str,
    versions: Sequence[VersionInfo],
    floating: Mapping[str, str],
) -> dict[str, tuple[str, ...]]:
    """Per version: the floating tags that are its alone and go with it.

    Args:
        templates: the image's tag templates (``tags:``).
        bump: the image's bump scheme (``patch`` or ``revision``).
        versions: the image's versions in the registry, with their labels.
        floating: every other tag of the repository -> the digest it points at.

    Returns:
        version -> its own tags (sorted); versions without one are left out. A tag
        is a version's own when it points at that version's digest (or an alias),
        a per-build template renders it from that version's labels, and no other
        version renders it from any template.
    """
    kinds = {t: per_build(t, bump) for t in templates if t != IMMUTABLE_TEMPLATE}
    rendered = {info.version: _rendered(info, templates, kinds) for info in versions}
    renderers = Counter(tag for r in rendered.values() for tag in r.tags)
    result: dict[str, tuple[str, ...]] = {}
    for info in versions:
        digests = {info.digest, *info.aliases}
        mine = sorted(
            tag
            for tag in rendered[info.version].own
            if renderers[tag] == 1 and floating.get(tag) in digests
        )
        if mine:
            result[info.version] = tuple(mine)
    return result
