"""The registry as the service layer sees it: the methods plan and apply call.

`RegistryClient` (imagectl/registry/client.py) is the implementation; a test may pass
anything with these methods (tests/unit/test_service.py checks that the client
satisfies the protocol, so the two cannot drift apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Protocol

from imagectl.registry import ManifestInfo, OciManifest, Reference


class Registry(Protocol):
    """The OCI distribution calls of planning (observe, recovery) and apply (the protocol,
    rebase, signing)."""

    def phase(self, name: str) -> AbstractContextManager[None]: ...

    def head_manifest(self, ref: Reference) -> ManifestInfo | None: ...

    def resolve_many(self, refs: Iterable[Reference]) -> dict[Reference, ManifestInfo | None]: ...

    def get_manifest(self, ref: Reference) -> OciManifest: ...

    def put_manifest(self, ref: Reference, manifest: OciManifest) -> str: ...

    def delete_manifest(self, ref: Reference) -> None: ...

    def get_blob(self, ref: Reference, digest: str) -> bytes: ...

    def put_blob(self, ref: Reference, data: bytes) -> str: ...

    def push_blob(self, ref: Reference, data: bytes) -> str: ...

    def mount_blob(self, ref: Reference, digest: str, source: Reference) -> bool: ...

    def list_tags(self, ref: Reference, page_size: int | None = None) -> list[str]: ...

    def list_repositories(self, ref: Reference) -> set[str] | None: ...


__all__ = ["Registry"]
