"""Retention policy: which versions of one image may be deleted, and why each other is kept.

Pure: no registry, no clock. The command gathers `VersionInfo` for each image and
the digests that must survive (lock, floating tags, bases of kept images), then
asks `select_prunable` for a `Decision` per version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from imagectl.domain.versions import version_key
from imagectl.errors import UsageError

VERSION_TAG = {
    "patch": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"),
    "revision": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)-r(0|[1-9]\d*)"),
}
_AGE = re.compile(r"\s*(\d+)\s*([hdw])\s*")
LOCK_NOTE = "(lock)"
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def is_version_tag(tag: str, bump: str) -> bool:
    """Whether `tag` is a built version under the image's bump scheme (``X.Y.Z``/``X.Y.Z-rN``)."""
    pattern = VERSION_TAG.get(bump)
    return pattern is not None and pattern.fullmatch(tag) is not None


def parse_age(text: str) -> timedelta:
    """``90d``, ``12w`` or ``36h`` as a timedelta.

    Raises:
        UsageError: the text is not a whole number followed by ``h``, ``d`` or ``w``.
    """
    match = _AGE.fullmatch(text)
    if match is None:
        raise UsageError(f"--older-than {text!r}: expected a number and h, d or w, e.g. 90d")
    return int(match.group(1)) * _UNIT[match.group(2)]


def format_age(age: timedelta) -> str:
    """The shortest of ``Nw``/``Nd``/``Nh`` that states `age` exactly."""
    hours = int(age.total_seconds() // 3600)
    if hours % (24 * 7) == 0 and hours:
        return f"{hours // (24 * 7)}w"
    if hours % 24 == 0 and hours:
        return f"{hours // 24}d"
    return f"{hours}h"


@dataclass(frozen=True)
class VersionInfo:
    """One version tag of an image, as the registry shows it.

    Attributes:
        version: the version tag (``1.4.3``, ``3.12.7-r2``).
        digest: what the tag points at; deleting the version deletes this digest.
        created: the ``org.opencontainers.image.created`` label, None when absent.
        base_digest: the ``org.opencontainers.image.base.digest`` label, None when absent.
        aliases: other digests that name this version (the platform image of an index).
        revision: the ``org.opencontainers.image.revision`` label, None when absent.
        base_name: the ``org.opencontainers.image.base.name`` label, None when absent.
        tags: floating tags that are this version's own (see `own_tags`); they go with it.
    """

    version: str
    digest: str
    created: datetime | None = None
    base_digest: str | None = None
    aliases: frozenset[str] = frozenset()
    revision: str | None = None
    base_name: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """Delete or keep one version, with the reasons."""

    info: VersionInfo
    delete: bool
    reasons: tuple[str, ...]

    @property
    def version(self) -> str:
        return self.info.version


def _protections(info: VersionInfo, protected: Mapping[str, Sequence[str]]) -> list[str]:
    found: list[str] = []
    for digest in (info.digest, *sorted(info.aliases)):
        for reason in protected.get(digest, ()):
            if reason not in found:
                found.append(reason)
    return found


def select_prunable(
    versions: list[VersionInfo],
    *,
    keep: int,
    older_than: timedelta | None,
    now: datetime,
    protected_digests: Mapping[str, Sequence[str]],
) -> list[Decision]:
    """Decide, for every version of one image, whether it goes.

    A version goes only when all of these hold: it is not among the newest `keep`;
    with an age rule, it was created more than `older_than` before `now` (an unknown
    age never counts as old); its digest (or an alias) is not in `protected_digests`;
    and no kept version shares its digest (a DELETE by digest removes every tag on it).

    Args:
        versions: the image's version tags, in any order.
        keep: how many of the newest versions always stay.
        older_than: only versions older than this may go; None: no age rule.
        now: the clock, for the age rule.
        protected_digests: digest -> reasons it must stay (``in the lock``, ``tag 1.4``,
            ``base of python 3.12.7-r2``).

    Returns:
        One decision per version, newest first.
    """
    if keep < 0:
        raise UsageError(f"--keep {keep}: must be 0 or more")
    ordered = sorted(versions, key=lambda v: version_key(v.version), reverse=True)
    draft: list[tuple[VersionInfo, list[str]]] = []
    for rank, info in enumerate(ordered):
        reasons: list[str] = []
        if rank < keep:
            reasons.append(f"newest {keep}")
        if older_than is not None:
            if info.created is None:
                reasons.append("age unknown (no created label)")
            elif now - info.created <= older_than:
                reasons.append(f"younger than {format_age(older_than)}")
        reasons.extend(_protections(info, protected_digests))
        draft.append((info, reasons))
    kept_digests: dict[str, str] = {}
    for info, reasons in draft:
        if reasons:
            kept_digests.setdefault(info.digest, info.version)
    decisions: list[Decision] = []
    for info, reasons in draft:
        sharer = kept_digests.get(info.digest)
        if not reasons and sharer is not None:
            reasons.append(f"same digest as kept {sharer}")
        if reasons:
            decisions.append(Decision(info, False, tuple(reasons)))
            continue
        why = [f"not among the newest {keep}"]
        if older_than is not None and info.created is not None:
            why.append(f"older than {format_age(older_than)}")
        if info.tags:
            why.append(f"its own tags go too: {', '.join(info.tags)}")
        decisions.append(Decision(info, True, tuple(why)))
    return decisions


def _add_once(reasons: list[str], reason: str) -> None:
    """Add `reason` unless it, or the same fact read from the lock (``… (lock)``), is there."""
    if reason not in reasons and f"{reason} {LOCK_NOTE}" not in reasons:
        reasons.append(reason)


def prune_images(
    versions: Mapping[str, list[VersionInfo]],
    order: Sequence[str],
    *,
    keep: int,
    older_than: timedelta | None,
    now: datetime,
    protected: Mapping[str, Mapping[str, Sequence[str]]],
    base_protected: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[Decision]]:
    """Decide for several images, descendants before their bases.

    Args:
        versions: image name -> its versions.
        order: every image of `versions`, each before the image it is built on, so that
            the base digests of a kept version protect the base's versions.
        keep: as for `select_prunable`.
        older_than: as for `select_prunable`.
        now: as for `select_prunable`.
        protected: image name -> digest -> reasons (the lock, floating tags).
        base_protected: digest -> reasons, for every image (bases recorded in the lock).

    Returns:
        image name -> decisions, newest first.
    """
    bases: dict[str, list[str]] = {d: list(r) for d, r in (base_protected or {}).items()}
    result: dict[str, list[Decision]] = {}
    for name in order:
        mine = {d: list(r) for d, r in protected.get(name, {}).items()}
        for digest, reasons in bases.items():
            mine.setdefault(digest, []).extend(reasons)
        decisions = select_prunable(
            versions.get(name, []),
            keep=keep,
            older_than=older_than,
            now=now,
            protected_digests=mine,
        )
        for decision in decisions:
            base = decision.info.base_digest
            if not decision.delete and base:
                _add_once(bases.setdefault(base, []), f"base of {name} {decision.version}")
        result[name] = decisions
    return result
