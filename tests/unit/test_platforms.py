"""Which platform of an index each read means: no hard-coded linux/amd64."""

from __future__ import annotations

import json

import pytest

from imagectl.platforms import (
    choose_platform,
    entry_platform,
    host_platform,
    index_platforms,
    read_config,
)
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest
from tests.fixtures.fake_registry import OCI_INDEX, OCI_MANIFEST, FakeRegistry, digest_of


def _image(reg: FakeRegistry, repo: str, arch: str, labels: dict[str, str]) -> tuple[str, int]:
    config = json.dumps(
        {"os": "linux", "architecture": arch, "config": {"Labels": labels}}
    ).encode()
    reg.blobs[(repo, digest_of(config))] = config
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"digest": digest_of(config), "size": len(config)},
            "layers": [],
        }
    ).encode()
    digest = digest_of(raw)
    reg.manifests[(repo, digest)] = (raw, OCI_MANIFEST)
    return digest, len(raw)


def _index(reg: FakeRegistry, repo: str, tag: str, arches: list[str]) -> str:
    entries = []
    for arch in arches:
        digest, size = _image(reg, repo, arch, {"arch": arch})
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    entries.append(  # a buildx attestation: never a platform
        {
            "mediaType": OCI_MANIFEST,
            "digest": entries[0]["digest"],
            "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    return reg.put(repo, tag, raw, OCI_INDEX)


@pytest.fixture
def reg() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def client(reg: FakeRegistry) -> RegistryClient:
    return RegistryClient(transport=reg.transport, insecure_registries=[reg.host])


def test_host_platform_normalises_the_machine_name() -> None:
    assert host_platform("x86_64") == "linux/amd64"
    assert host_platform("aarch64") == "linux/arm64"


def test_choose_prefers_declared_then_host_then_first() -> None:
    available = ["linux/arm64", "linux/s390x", "linux/amd64"]
    assert choose_platform(available, ["linux/s390x"]) == "linux/s390x"
    assert choose_platform(available, ["linux/arm64/v8"]) == "linux/arm64"
    assert choose_platform(available, ["linux/riscv64"]) == host_platform()
    assert choose_platform(["linux/s390x", "linux/ppc64le"]) == "linux/s390x"


def test_attestation_entries_are_no_platform() -> None:
    attest = {
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
    }
    assert entry_platform(attest) is None
    assert entry_platform(
        {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}
    ) == ("linux/arm/v7")


def test_index_without_amd64_reads_its_first_image(
    reg: FakeRegistry, client: RegistryClient
) -> None:
    index = _index(reg, "team/app", "1.0.0", ["s390x", "arm64"])
    config = read_config(client, parse_reference(f"{reg.host}/team/app:1.0.0"))
    want = "arm64" if host_platform() == "linux/arm64" else "s390x"
    assert config.labels == {"arch": want}
    assert config.index_digest == index
    assert config.platform == f"linux/{want}"


def test_declared_platform_wins_over_the_host(reg: FakeRegistry, client: RegistryClient) -> None:
    _index(reg, "team/app", "1.0.0", ["amd64", "arm64"])
    ref = parse_reference(f"{reg.host}/team/app:1.0.0")
    assert read_config(client, ref, ["linux/arm64"]).labels == {"arch": "arm64"}
    assert read_config(client, ref, ["linux/amd64"]).labels == {"arch": "amd64"}


def test_a_plain_image_is_read_as_it_is_in_two_requests(
    reg: FakeRegistry, client: RegistryClient
) -> None:
    reg.add_image("team/app", "1.0.0", {"a": "b"})
    before = client.request_count
    config = read_config(client, parse_reference(f"{reg.host}/team/app:1.0.0"), ["linux/arm64"])
    assert config.labels == {"a": "b"} and config.index_digest is None
    assert client.request_count - before == 2  # the manifest and the config blob


def test_index_platforms_skips_attestations(reg: FakeRegistry) -> None:
    _index(reg, "team/app", "1.0.0", ["amd64", "arm64"])
    raw, media = reg.manifests[("team/app", "1.0.0")]
    assert list(index_platforms(OciManifest.from_bytes(raw, media))) == [
        "linux/amd64",
        "linux/arm64",
    ]
