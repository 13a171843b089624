"""Version lines: what the next build of an image is called (docs/design.md section 3).

Two bump modes:

- ``patch``: imagectl owns the patch number. ``1.4`` builds ``1.4.0``, then
  ``1.4.1``, ``1.4.2``…; ``1.4.2`` is a floor (first build ``1.4.2``, later
  rebuilds continue from the newest built one).
- ``revision``: the image packages an upstream ``X.Y.Z`` that must not be
  invented; builds are ``X.Y.Z-r0``, ``X.Y.Z-r1``…, restarting at ``r0`` when
  the declared upstream changes.

Pure: no I/O. Built versions are ``X.Y.Z`` or ``X.Y.Z-rN``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import semver

from imagectl.errors import PlanError

_REVISION = re.compile(r"r(0|[1-9][0-9]*)")


class Bump(StrEnum):
    """How an image's versions advance."""

    PATCH = "patch"
    REVISION = "revision"


class VersionLoweredError(PlanError):
    """The declared version is below a version that was already built."""

    def __init__(self, declared: str, built: str) -> None:
        self.declared = declared
        self.built = built
        super().__init__(f"declared version {declared} is lower than the built version {built}")


@dataclass(frozen=True)
class _Built:
    major: int
    minor: int
    patch: int
    revision: int | None  # None: a patch-bump version without "-rN"

    @property
    def upstream(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


@lru_cache(maxsize=16384)  # pure; a fleet repeats few versions (issue 12)
def _parse_semver(text: str) -> semver.Version | None:
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except (ValueError, TypeError):
        return None


def check_declared(declared: str, bump: Bump) -> str | None:
    """Checks a declared ``version`` against its bump mode.

    Args:
        declared: the ``version`` from the manifest.
        bump: the image's bump mode.

    Returns:
        An error message, or None when the version is acceptable.
    """
    parsed = _parse_semver(declared)
    parts = declared.count(".") + 1
    if bump is Bump.REVISION:
        if parsed is None or parsed.prerelease or parsed.build or parts != 3:
            return (
                f"version {declared!r} is not valid for bump: revision "
                '(expected the upstream version X.Y.Z, e.g. "3.12.7")'
            )
        return None
    if parsed is None or parsed.prerelease or parsed.build or parts not in (2, 3):
        return (
            f"version {declared!r} is not valid for bump: patch "
            '(expected X.Y or X.Y.Z, e.g. "1.4" or "1.4.2")'
        )
    return None


@lru_cache(maxsize=16384)  # pure; a fleet repeats few versions (issue 12)
def _declared(declared: str, bump: Bump) -> tuple[tuple[int, int, int], bool]:
    """(X, Y, Z) of a declared version and whether it named its patch number."""
    error = check_declared(declared, bump)
    if error is not None:
        raise PlanError(error)
    parsed = semver.Version.parse(declared, optional_minor_and_patch=True)
    return (parsed.major, parsed.minor, parsed.patch), declared.count(".") == 2


@lru_cache(maxsize=16384)  # pure; a fleet repeats few versions (issue 12)
def _parse_built(version: str) -> _Built:
    parsed = _parse_semver(version)
    revision: int | None = None
    if parsed is not None and parsed.prerelease is not None:
        match = _REVISION.fullmatch(parsed.prerelease)
        revision = int(match.group(1)) if match else None
        if match is None:
            parsed = None
    if parsed is None or parsed.build is not None or version.count(".") != 2:
        raise PlanError(
            f"built version {version!r} cannot be parsed (expected X.Y.Z or X.Y.Z-rN); "
            "fix or remove it in imagectl.lock"
        )
    return _Built(parsed.major, parsed.minor, parsed.patch, revision)


def _fmt(upstream: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in upstream)


def next_version(declared: str, bump: Bump, built: str | None) -> str:
    """The full version the next build of an image gets.

    Args:
        declared: the ``version`` from the manifest (``1.4``, ``1.4.2``, ``3.12.7``).
        bump: the image's bump mode.
        built: the newest version previously built for the image, None if never built.

    Returns:
        ``X.Y.Z`` for ``bump: patch``, ``X.Y.Z-rN`` for ``bump: revision``.

    Raises:
        VersionLoweredError: the declared version is below the built one.
        PlanError: the declared or built version does not parse.
    """
    want, exact = _declared(declared, bump)
    if built is None:
        return _fmt(want) + ("-r0" if bump is Bump.REVISION else "")
    have = _parse_built(built)
    if bump is Bump.REVISION:
        if want < have.upstream:
            raise VersionLoweredError(declared, built)
        if want > have.upstream or have.revision is None:
            return f"{_fmt(want)}-r0"
        return f"{_fmt(want)}-r{have.revision + 1}"
    if want[:2] < have.upstream[:2]:
        raise VersionLoweredError(declared, built)
    if want[:2] > have.upstream[:2]:
        return _fmt(want)
    if exact and want > have.upstream:
        return _fmt(want)  # the floor was raised past what was built
    return _fmt((have.major, have.minor, have.patch + 1))


def version_changed(declared: str, bump: Bump, built: str | None) -> bool:
    """Whether the declared version moved past the built line (reason ``version-changed``).

    Args:
        declared: the ``version`` from the manifest.
        bump: the image's bump mode.
        built: the newest built version, None if never built.

    Returns:
        False when never built. For ``patch``: True when the declared ``X.Y``
        differs from the built one, or a declared ``X.Y.Z`` is above the built
        ``X.Y.Z``. For ``revision``: True when the declared upstream differs
        from the built upstream.
    """
    if built is None:
        return False
    want, exact = _declared(declared, bump)
    have = _parse_built(built)
    if bump is Bump.REVISION:
        return want != have.upstream
    if want[:2] != have.upstream[:2]:
        return True
    return exact and want > have.upstream


def version_fields(version: str) -> dict[str, str]:
    """The tag template fields derived from a full version.

    Args:
        version: a full version, ``1.4.3`` or ``3.12.7-r2``.

    Returns:
        ``version``, ``upstream``, ``major``, ``minor``, ``patch`` and
        ``revision`` (the empty string for a version without ``-rN``).

    Raises:
        PlanError: the version does not parse.
    """
    parsed = _parse_built(version)
    return {
        "version": version,
        "upstream": _fmt(parsed.upstream),
        "major": str(parsed.major),
        "minor": str(parsed.minor),
        "patch": str(parsed.patch),
        "revision": "" if parsed.revision is None else str(parsed.revision),
    }


def version_key(version: str) -> tuple[int, int, int, int]:
    """A sort key giving built versions their total order.

    ``1.4.9 < 1.4.10``; ``3.12.7-r2 < 3.12.7-r10 < 3.12.8-r0``; a version
    without a revision sorts before ``-r0`` of the same upstream.

    Raises:
        PlanError: the version does not parse.
    """
    parsed = _parse_built(version)
    revision = -1 if parsed.revision is None else parsed.revision
    return (parsed.major, parsed.minor, parsed.patch, revision)
