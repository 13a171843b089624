"""Every RegistryClient operation against the real reference registry (plain HTTP, loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devenv import registry as devenv_registry
from devenv.registry import RegistryServer, start_registry
from imagectl.errors import RegistryError
from imagectl.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Reference,
    RegistryClient,
    StaticCredentials,
    parse_reference,
)
from tests.fixtures.oci import push_image, push_index

pytestmark = pytest.mark.integration

LABELS = {"org.opencontainers.image.version": "1.4.2", "dev.imagectl.family": "runtime"}


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(credentials=StaticCredentials({})) as client:
        yield client


@pytest.fixture
def http(registry: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        yield client


def ref(registry: RegistryServer, repo: str, tag: str = "1") -> Reference:
    return parse_reference(f"{registry.host}/{repo}:{tag}")


def test_digest_and_labels_read_back(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    pushed = push_image(http, repo, "1.4.2", LABELS)
    target = ref(registry, repo, "1.4.2")
    info = client.head_manifest(target)
    assert info is not None
    assert (info.digest, info.media_type, info.size) == (
        pushed.digest,
        OCI_MANIFEST,
        len(pushed.raw),
    )
    manifest = client.get_manifest(target)
    assert (manifest.digest, manifest.raw) == (pushed.digest, pushed.raw)
    assert client.get_manifest(target.with_digest(pushed.digest)).raw == pushed.raw
    config = client.image_config(target)
    assert config.labels == LABELS
    assert (config.manifest_digest, config.config_digest) == (pushed.digest, pushed.config_digest)
    assert config.index_digest is None and config.platform == "linux/amd64"


def test_missing_manifest_is_none_for_head_and_an_error_for_get(
    registry: RegistryServer, repo: str, client: RegistryClient
) -> None:
    assert client.head_manifest(ref(registry, repo, "nope")) is None
    with pytest.raises(RegistryError) as info:
        client.get_manifest(ref(registry, repo, "nope"))
    assert f"{registry.host}/{repo}:nope" in str(info.value)
    assert "404" in str(info.value) and "UNKNOWN" in str(info.value)


def test_index_selects_the_platform_image(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    amd = push_image(http, repo, "amd64", {"arch": "amd64"}, content="x86")
    arm = push_image(http, repo, "arm64", {"arch": "arm64"}, platform="linux/arm64/v8", content="a")
    index = push_index(http, repo, "multi", {"linux/amd64": amd, "linux/arm64/v8": arm})
    target = ref(registry, repo, "multi")
    info = client.head_manifest(target)
    assert info is not None and (info.digest, info.media_type) == (index.digest, OCI_INDEX)
    default = client.image_config(target)
    assert (default.labels, default.manifest_digest) == ({"arch": "amd64"}, amd.digest)
    assert default.index_digest == index.digest
    on_arm = client.image_config(target, platform="linux/arm64")
    assert (on_arm.labels, on_arm.manifest_digest) == ({"arch": "arm64"}, arm.digest)
    assert on_arm.platform == "linux/arm64/v8"
    with pytest.raises(RegistryError, match=r"no image for linux/ppc64le"):
        client.image_config(target, platform="linux/ppc64le")


def test_retag_moves_floating_tags_without_blob_uploads(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    first = push_image(http, repo, "1.4.2", LABELS, content="one")
    second = push_image(http, repo, "1.4.3", LABELS, content="two")
    before = client.request_count
    assert client.retag(ref(registry, repo, "1.4.2"), "1.4") == first.digest
    assert client.request_count - before == 2  # GET + PUT, no blob traffic
    assert client.retag(ref(registry, repo, "1.4.3"), "1.4") == second.digest
    info = client.head_manifest(ref(registry, repo, "1.4"))
    assert info is not None and info.digest == second.digest
    index = push_index(http, repo, "idx", {"linux/amd64": first})
    assert client.retag(ref(registry, repo, "idx"), "idx-floating") == index.digest


def test_tags_listing_with_small_pages(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    pushed = push_image(http, repo, "1.0.0", LABELS)
    tags = ["1.0.0", "1.0.1", "1.0", "1", "2.0.0"]
    for tag in tags[1:]:
        client.retag(ref(registry, repo, "1.0.0"), tag)
    assert pushed.digest
    # docker-registry 2.8 ignores n= for tags; the client follows Link when a registry pages.
    assert client.list_tags(ref(registry, repo), page_size=2) == sorted(tags)
    assert client.list_tags(ref(registry, "tests/never-pushed")) == []


def test_delete_by_digest(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    pushed = push_image(http, repo, "old", LABELS, content="old")
    kept = push_image(http, repo, "new", LABELS, content="new")
    client.delete_manifest(ref(registry, repo, "old").with_digest(pushed.digest))
    assert client.head_manifest(ref(registry, repo, "old")) is None
    assert client.head_manifest(ref(registry, repo, "new").with_digest(kept.digest)) is not None
    assert client.list_tags(ref(registry, repo)) == ["new"]
    with pytest.raises(RegistryError, match=r"MANIFEST_UNKNOWN"):
        client.delete_manifest(ref(registry, repo, "old").with_digest(pushed.digest))


def test_delete_on_a_registry_with_deletion_disabled_says_so(
    tmp_path: Path, client: RegistryClient
) -> None:
    server = start_registry(tmp_path / "no-delete", delete_enabled=False)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            pushed = push_image(http, "tests/no-delete", "1", LABELS)
        target = parse_reference(f"{server.host}/tests/no-delete@{pushed.digest}")
        with pytest.raises(RegistryError, match=r"deletion disabled.*storage.delete.enabled"):
            client.delete_manifest(target)
    finally:
        server.stop()


def test_resolve_many_once_per_distinct_reference(
    registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    images = {tag: push_image(http, repo, tag, LABELS, content=tag) for tag in "abcdef"}
    refs = [ref(registry, repo, tag) for tag in images] * 3 + [ref(registry, repo, "missing")]
    before = client.request_count
    found = client.resolve_many(refs)
    assert client.request_count - before == 7
    assert {r.tag: (i.digest if i else None) for r, i in found.items()} == {
        **{tag: image.digest for tag, image in images.items()},
        "missing": None,
    }


def test_a_port_taken_before_the_registry_binds_it_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() answers, then something else binds the port: the next one is tried."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        answers = iter([busy])
        real = devenv_registry.free_port
        monkeypatch.setattr(devenv_registry, "free_port", lambda: next(answers, None) or real())
        server = start_registry(tmp_path / "retry")
        try:
            assert server.host != f"127.0.0.1:{busy}"
            assert httpx.get(f"{server.url}/v2/", timeout=5).status_code == 200
        finally:
            server.stop()
        with pytest.raises(RuntimeError, match=f"could not bind 127.0.0.1:{busy}"):
            start_registry(tmp_path / "asked", port=busy)
