"""The Dockerfile frontend a build runs: BuildKit's ``# syntax=`` parser directive.

``# syntax=registry/frontend:tag`` makes BuildKit fetch that image at build time and
let it turn the Dockerfile into the build, even with ``network: none``. So the
frontend is an input like the base: at plan time each distinct reference is resolved
to its digest (one registry HEAD, none when it is pinned by digest), the digest
enters the image's inputs digest (a moved tag is a rebuild), the docker build is told
to run exactly that digest (``BUILDKIT_SYNTAX``), and the lock records it with the
build. buildah does not read the directive (it has its own Dockerfile parser), so a
buildah image has no frontend. ``imagectl lint`` reports an unpinned one (IC213).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path

from imagectl.domain.reference import InvalidReferenceError, Reference
from imagectl.errors import ImagectlError, Location, ManifestError, Problem, RegistryError
from imagectl.lint.dockerfile import parser_directives
from imagectl.manifest.models import ImageConfig
from imagectl.registry import RegistryClient, parse_reference

BUILD_ARG = "BUILDKIT_SYNTAX"  # BuildKit's override of the directive, given the pinned reference
_HEAD_LINES = 16  # directives are the first lines; three keys exist


Directive = tuple[str, int] | None  # the ``# syntax=`` value and its line, or none


def syntax_directive(dockerfile: Path) -> Directive:
    """The ``# syntax=`` value of a Dockerfile and its line, or None when it has none.

    Raises:
        ImagectlError: the Dockerfile cannot be read.
    """
    try:
        with open(dockerfile, encoding="utf-8", errors="surrogateescape") as handle:
            return _directive_in(handle)
    except OSError as exc:
        raise ImagectlError(f"cannot read Dockerfile {dockerfile}: {exc.strerror or exc}") from exc


def syntax_directive_of(content: bytes) -> Directive:
    """`syntax_directive` of a Dockerfile whose bytes are `content` (read as a file is:
    UTF-8, universal newlines)."""
    return _directive_in(io.TextIOWrapper(io.BytesIO(content), "utf-8", "surrogateescape"))


def _directive_in(handle: Iterable[str]) -> Directive:
    head = list(islice(handle, _HEAD_LINES))
    for key, value, line in parser_directives(line.rstrip("\n") for line in head):
        if key == "syntax" and value:
            return value, line
    return None


def frontend_references(
    images: Iterable[ImageConfig],
    root: Path,
    read_directive: Callable[[Path], Directive] = syntax_directive,
) -> dict[str, Reference]:
    """Image name -> the frontend reference its Dockerfile names (docker images only).

    `read_directive` reads a Dockerfile's ``# syntax=`` (a plan's reads it through the
    file cache, `observe.DirectiveReader`).

    Raises:
        ManifestError: a ``# syntax=`` value is not an image reference (located).
    """
    found: dict[str, Reference] = {}
    problems: list[Problem] = []
    by_file: dict[Path, Directive] = {}
    for image in images:
        if image.builder != "docker":
            continue
        if image.dockerfile not in by_file:
            by_file[image.dockerfile] = read_directive(image.dockerfile)
        directive = by_file[image.dockerfile]
        if directive is None:
            continue
        value, line = directive
        try:
            found[image.name] = parse_reference(value)
        except InvalidReferenceError as exc:
            shown = os.path.relpath(image.dockerfile, root)
            problems.append(Problem(Location(shown, line), f"# syntax={value}: {exc}"))
    if problems:
        raise ManifestError(list(dict.fromkeys(problems)))
    return found


def resolve_frontends(
    images: Iterable[ImageConfig],
    root: Path,
    client: RegistryClient,
    read_directive: Callable[[Path], Directive] = syntax_directive,
) -> dict[str, str]:
    """Image name -> its frontend pinned by digest (``ref:tag@sha256:…``), docker images only.

    Each distinct reference by tag costs one HEAD; a pinned one costs none.

    Raises:
        ManifestError: a ``# syntax=`` value is not an image reference.
        RegistryError: a frontend cannot be resolved (not found, registry down).
    """
    refs = frontend_references(images, root, read_directive)
    found = client.resolve_many(ref for ref in refs.values() if ref.digest is None)
    pinned: dict[str, str] = {}
    for name, ref in refs.items():
        if ref.digest is None:
            info = found.get(ref)
            if info is None:
                raise RegistryError(f"{name}: the Dockerfile frontend {ref} is not in the registry")
            ref = ref.with_digest(info.digest)
        pinned[name] = str(ref)
    return pinned


def frontend_build_args(frontend: str | None) -> dict[str, str]:
    """The build arg that makes BuildKit run exactly the pinned frontend (none without one)."""
    return {BUILD_ARG: frontend} if frontend is not None else {}


__all__ = [
    "BUILD_ARG",
    "frontend_build_args",
    "frontend_references",
    "resolve_frontends",
    "syntax_directive",
    "syntax_directive_of",
]
