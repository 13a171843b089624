"""Image references: parsing, docker-style normalisation and validation.

The grammar is docker's (``distribution/reference``): ``[host[:port]/]path[:tag][@digest]``.
A name without a registry is on Docker Hub (``debian`` is
``docker.io/library/debian:latest``); the first path element is a registry when it
contains a ``.`` or a ``:``, is ``localhost``, or is not lowercase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from imagectl.errors import ImagectlError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
DIGEST_RE = re.compile(r"(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_MAX_NAME = 255


class InvalidReferenceError(ImagectlError):
    """An image reference (``registry/repository:tag@digest``) is malformed."""


def _invalid(text: str, why: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid image reference {text!r}: {why}")


def is_repository_path(path: str) -> bool:
    """True for a repository path such as ``acme/base`` (docker's grammar, at most 255)."""
    return len(path) <= _MAX_NAME and _REPOSITORY_RE.fullmatch(path) is not None


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid OCI tag, else raise InvalidReferenceError."""
    if not TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(
            f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256/sha512 digest, else raise."""
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(
            f"invalid digest {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>"
        )
    return digest


@dataclass(frozen=True)
class Reference:
    """A normalised image reference.

    Attributes:
        registry: registry host as written in references (``docker.io``, ``localhost:5000``).
        repository: repository path inside the registry (``library/debian``).
        tag: the tag, or None for a reference by digest only.
        digest: the pinned manifest digest, or None.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise InvalidReferenceError(f"reference {self.name} needs a tag or a digest")
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host the distribution API is served from (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in a URL: the digest if pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None  # guaranteed by __post_init__
        return self.tag

    @property
    def by_tag(self) -> Reference:
        """This reference without its digest; raises InvalidReferenceError if it has no tag."""
        if self.tag is None:
            raise InvalidReferenceError(f"reference {self} has no tag")
        return replace(self, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """This reference pinned to `digest` (the tag, if any, is kept)."""
        return replace(self, digest=validate_digest(digest))

    def with_tag(self, tag: str) -> Reference:
        """The same repository at `tag`; the digest is dropped (it belonged to the old tag)."""
        return replace(self, tag=validate_tag(tag), digest=None)


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash:
        return DOCKER_HUB, f"library/{name}"
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        if not _DOMAIN_RE.fullmatch(first):
            raise _invalid(text, f"{first!r} is not a valid registry host")
        domain = DOCKER_HUB if first.lower() in _HUB_ALIASES else first
    else:
        domain, rest = DOCKER_HUB, name
    if domain == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    return domain, rest


def parse_reference(text: str) -> Reference:
    """Parse and normalise an image reference.

    Args:
        text: a reference as docker accepts it, e.g. ``debian``,
            ``localhost:5000/acme/base:1.4.2`` or ``host/ns/repo:tag@sha256:…``.

    Returns:
        The normalised reference; ``latest`` is assumed when neither tag nor digest is given.

    Raises:
        InvalidReferenceError: the text is not a valid reference; the message says why.
    """
    registry, repository, tag, digest = _parse(text)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return _reference(registry, repository, tag, digest)


def written_tag(text: str) -> str:
    """The tag written in a reference (``repo:tag@sha256:…`` -> ``tag``), parsed by the same
    grammar as `parse_reference`; "" when it has none (no ``latest`` is assumed) or when
    the text is not a valid reference (e.g. ``repo:?``, a base not built yet)."""
    try:
        return _parse(text)[2] or ""
    except InvalidReferenceError:
        return ""


def without_digest(text: str) -> str:
    """A reference as written, by tag only (``repo:tag@sha256:…`` -> ``repo:tag``): the
    grammar's only ``@`` starts the digest. Not normalised, so it compares with what the
    manifest and the lock say."""
    return text.partition("@")[0]


@lru_cache(maxsize=65536)  # pure and immutable: plan and apply parse each repository often
def _reference(registry: str, repository: str, tag: str | None, digest: str | None) -> Reference:
    return Reference(registry, repository, tag, digest)


@lru_cache(maxsize=65536)  # pure: a plan meets each repository and base several times
def _parse(text: str) -> tuple[str, str, str | None, str | None]:
    """(registry, repository, tag as written or None, digest or None), validated."""
    text = text.strip()
    if not text:
        raise InvalidReferenceError("invalid image reference '': it is empty")
    if "://" in text:
        raise _invalid(text, "leave out the URL scheme (write host/repository:tag)")
    rest, at, digest = text.partition("@")
    if at and not DIGEST_RE.fullmatch(digest):
        raise _invalid(text, f"{digest!r} is not a sha256:<64 hex> or sha512:<128 hex> digest")
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.fullmatch(tag):
            raise _invalid(text, f"{tag!r} is not a valid tag")
    if not name:
        raise _invalid(text, "the repository name is missing")
    registry, repository = _split_domain(text, name)
    if repository.lower() != repository:
        raise _invalid(text, f"repository name {repository!r} must be lowercase")
    if not _REPOSITORY_RE.fullmatch(repository):
        raise _invalid(
            text,
            f"{repository!r} is not a valid repository path "
            "(components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/')",
        )
    if len(registry) + 1 + len(repository) > _MAX_NAME:
        raise _invalid(text, f"the name is longer than {_MAX_NAME} characters")
    return registry, repository, tag, digest if at else None
