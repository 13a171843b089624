"""The registry side of rebase on the reference registry: blob mount/upload, refusal."""

from __future__ import annotations

import httpx
import pytest

from devenv.registry import RegistryServer
from imagectl.rebase.publish import Rebaser, RebaseRefused, RebaseRequest
from imagectl.registry import RegistryClient, parse_reference
from tests.fixtures.oci import push_image

pytestmark = pytest.mark.integration


def test_push_mount_and_has_blob(registry: RegistryServer, repo: str) -> None:
    with RegistryClient(insecure_registries=[registry.host]) as client:
        source = parse_reference(f"{registry.host}/{repo}-src:x")
        target = parse_reference(f"{registry.host}/{repo}-dst:x")
        digest = client.push_blob(source, b"some layer bytes")
        assert client.has_blob(source, digest)
        assert not client.has_blob(target, digest)
        assert client.mount_blob(target, digest, source)
        assert client.has_blob(target, digest)
        assert client.get_blob(target, digest) == b"some layer bytes"


def test_an_image_not_starting_with_its_recorded_base_is_refused(
    registry: RegistryServer, repo: str
) -> None:
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        base_v1 = push_image(http, f"{repo}/base", "1", content="base v1")
        base_v2 = push_image(http, f"{repo}/base", "2", content="base v2")
        old = push_image(http, f"{repo}/app", "1.0.0", content="built elsewhere")
    base = parse_reference(f"{registry.host}/{repo}/base:1")
    request = RebaseRequest(
        repository=parse_reference(f"{registry.host}/{repo}/app:1.0.0"),
        old_digest=old.digest,
        old_base=base.with_digest(base_v1.digest),
        new_base=base.with_digest(base_v2.digest),
        labels={"org.opencontainers.image.version": "1.0.1"},
        annotations={},
        created="2026-12-01T00:00:00Z",
    )
    refused = pytest.raises(RebaseRefused, match="does not start with the layers")
    with RegistryClient(insecure_registries=[registry.host]) as client, refused:
        Rebaser(client).rebase(request)
