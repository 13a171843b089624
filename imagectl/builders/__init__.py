"""Build backends behind the `Builder` protocol, registered by name."""

from __future__ import annotations

from collections.abc import Callable

from imagectl.builders.base import Builder, BuildRequest, SecretSpec
from imagectl.builders.buildah import BuildahBuilder
from imagectl.builders.docker import DockerBuilder
from imagectl.errors import BuildError

BUILDERS: dict[str, Callable[[], Builder]] = {
    "docker": DockerBuilder,
    "buildah": BuildahBuilder,
}

__all__ = [
    "BUILDERS",
    "BuildRequest",
    "Builder",
    "SecretSpec",
    "get_builder",
]


def get_builder(name: str) -> Builder:
    """A fresh backend by its manifest name (``docker`` or ``buildah``).

    Raises:
        BuildError: no backend has that name.
    """
    factory = BUILDERS.get(name)
    if factory is None:
        raise BuildError(f"unknown builder {name!r}; known: {', '.join(sorted(BUILDERS))}")
    return factory()
