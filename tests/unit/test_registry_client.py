"""RegistryClient operations against an in-memory registry (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from imagectl.errors import AuthError, RegistryError
from imagectl.registry import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    InvalidReferenceError,
    OciManifest,
    RegistryClient,
    StaticCredentials,
    choose_scheme,
    choose_schemes,
    parse_reference,
)
from tests.fixtures.fake_registry import FakeRegistry, digest_of, errors

REF = parse_reference("registry.test/acme/app:1")


def client_for(fake: FakeRegistry | httpx.MockTransport, **kw: object) -> RegistryClient:
    transport = fake.transport if isinstance(fake, FakeRegistry) else fake
    return RegistryClient(
        credentials=StaticCredentials({}),
        transport=transport,
        sleep=lambda _: None,
        **kw,  # type: ignore[arg-type]
    )


def test_head_and_get_agree_on_the_digest_and_send_every_manifest_type() -> None:
    fake = FakeRegistry()
    digest = fake.add_image("acme/app", "1", {"a": "b"})
    accepts: list[str] = []

    def spy(request: httpx.Request) -> httpx.Response:
        accepts.append(request.headers.get("accept", ""))
        return fake.handle(request)

    with client_for(httpx.MockTransport(spy)) as client:
        info = client.head_manifest(REF)
        manifest = client.get_manifest(REF)
    assert info is not None and info.digest == digest == manifest.digest
    assert info.media_type == manifest.media_type == OCI_MANIFEST
    assert info.size == len(manifest.raw)
    assert manifest.data["schemaVersion"] == 2
    assert accepts == [MANIFEST_ACCEPT, MANIFEST_ACCEPT]
    for media in ("oci.image.index", "oci.image.manifest", "manifest.list.v2", "manifest.v2"):
        assert media in MANIFEST_ACCEPT


def test_a_digest_that_does_not_match_the_bytes_is_an_error() -> None:
    raw = b'{"schemaVersion": 2, "mediaType": "%s"}' % OCI_MANIFEST.encode()
    lie = "sha256:" + "0" * 64

    def liar(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": lie}
        return httpx.Response(200, headers=headers, content=raw)

    with client_for(httpx.MockTransport(liar)) as client:
        with pytest.raises(RegistryError, match=r"digest mismatch.*registry.test/acme/app:1"):
            client.get_manifest(REF)
        with pytest.raises(RegistryError, match=r"digest mismatch"):
            client.get_manifest(REF.with_digest("sha256:" + "1" * 64))


def test_a_pinned_reference_is_verified_even_without_the_header() -> None:
    raw = b'{"schemaVersion": 2}'

    def no_header(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": OCI_MANIFEST}, content=raw)

    with client_for(httpx.MockTransport(no_header)) as client:
        assert client.get_manifest(REF).digest == digest_of(raw)
        assert client.get_manifest(REF.with_digest(digest_of(raw))).digest == digest_of(raw)
        with pytest.raises(RegistryError, match=r"digest mismatch"):
            client.get_manifest(REF.with_digest("sha256:" + "2" * 64))
        # HEAD without Docker-Content-Digest: the bytes decide (one GET more).
        info = client.head_manifest(REF)
        assert info is not None and info.digest == digest_of(raw)


def test_a_blob_that_does_not_match_its_digest_is_refused() -> None:
    fake = FakeRegistry()
    fake.add_image("acme/app", "1", {"a": "b"})
    for key in list(fake.blobs):
        fake.blobs[key] = b'{"config": {"Labels": {"a": "forged"}}}'
    with client_for(fake) as client, pytest.raises(RegistryError, match=r"digest mismatch"):
        client.image_config(REF)


def test_labels_and_index_platform_selection() -> None:
    fake = FakeRegistry()
    amd = fake.add_image("acme/app", "amd", {"arch": "amd64"})
    arm = fake.add_image("acme/app", "arm", {"arch": "arm64"})
    entries = [
        {"digest": amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "9" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    index_digest = fake.put("acme/app", "1", index.encode(), OCI_INDEX)
    with client_for(fake) as client:
        default = client.image_config(REF)
        arm64 = client.image_config(REF, platform="linux/arm64")
        with pytest.raises(RegistryError, match=r"no image for linux/s390x.*linux/amd64"):
            client.image_config(REF, platform="linux/s390x")
        plain = client.image_config(REF.with_tag("amd"))
    assert (default.labels, default.manifest_digest) == ({"arch": "amd64"}, amd)
    assert (arm64.labels, arm64.manifest_digest) == ({"arch": "arm64"}, arm)
    assert default.index_digest == arm64.index_digest == index_digest
    assert plain.index_digest is None and plain.labels == {"arch": "amd64"}


def test_null_labels_are_empty() -> None:
    fake = FakeRegistry()
    fake.add_image("acme/app", "1", None)
    with client_for(fake) as client:
        assert client.image_config(REF).labels == {}


def test_retag_puts_the_same_bytes_under_the_new_tag() -> None:
    fake = FakeRegistry()
    digest = fake.add_image("acme/app", "1.4.2")
    with client_for(fake) as client:
        assert client.retag(REF.with_tag("1.4.2"), "1.4") == digest
    assert fake.manifests[("acme/app", "1.4")] == fake.manifests[("acme/app", "1.4.2")]
    assert [c for c in fake.calls if c[0] == "PUT"] == [("PUT", "/v2/acme/app/manifests/1.4")]
    assert not any("blobs" in path for _, path in fake.calls)


def test_put_manifest_rejects_a_registry_that_names_another_digest() -> None:
    def wrong(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "3" * 64})

    manifest = OciManifest.from_bytes(b'{"schemaVersion": 2}', OCI_MANIFEST)
    with (
        client_for(httpx.MockTransport(wrong)) as client,
        pytest.raises(RegistryError, match=r"digest mismatch"),
    ):
        client.put_manifest(REF, manifest)


def test_tags_follow_link_pagination() -> None:
    fake = FakeRegistry()
    for tag in ["1.0.0", "1.0.1", "1.1.0", "1", "1.1", "latest-build"]:
        fake.add_image("acme/app", tag)
    with client_for(fake) as client:
        tags = client.list_tags(REF, page_size=2)
        assert tags == ["1", "1.0.0", "1.0.1", "1.1", "1.1.0", "latest-build"]
        assert client.request_count == 3
        assert client.list_tags(parse_reference("registry.test/acme/none")) == []


def test_delete_by_digest_and_a_clear_message_when_disabled() -> None:
    fake = FakeRegistry()
    digest = fake.add_image("acme/app", "1")
    with client_for(fake) as client:
        with pytest.raises(InvalidReferenceError, match=r"by digest"):
            client.delete_manifest(REF)
        fake.delete_enabled = False
        with pytest.raises(RegistryError, match=r"deletion disabled.*UNSUPPORTED"):
            client.delete_manifest(REF.with_digest(digest))
        fake.delete_enabled = True
        client.delete_manifest(REF.with_digest(digest))
        assert client.head_manifest(REF) is None


def test_errors_name_registry_reference_and_server_words() -> None:
    def denied(request: httpx.Request) -> httpx.Response:
        return errors("DENIED", "requested access to the resource is denied", 403)

    with client_for(httpx.MockTransport(denied)) as client, pytest.raises(AuthError) as info:
        client.get_manifest(REF)
    text = str(info.value)
    assert "GET manifest registry.test/acme/app:1" in text
    assert "registry.test" in text and "DENIED: requested access" in text


def test_resolve_many_resolves_each_distinct_reference_once() -> None:
    fake = FakeRegistry()
    one = fake.add_image("acme/app", "1")
    two = fake.add_image("acme/app", "2")
    refs = [REF, REF.with_tag("2"), REF, REF.with_tag("missing"), REF.with_tag("2")]
    with client_for(fake) as client:
        found = client.resolve_many(refs)
        assert client.request_count == 3
        assert client.resolve_many([]) == {}
    assert list(found) == [REF, REF.with_tag("2"), REF.with_tag("missing")]
    assert [i.digest if i else None for i in found.values()] == [one, two, None]


def test_resolve_many_lists_every_failure() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return errors("NAME_INVALID", "invalid repository name", 400)

    refs = [REF, REF.with_tag("2")]
    with (
        client_for(httpx.MockTransport(broken)) as client,
        pytest.raises(RegistryError, match=r"2 of 2 references") as info,
    ):
        client.resolve_many(refs)
    assert str(REF) in str(info.value) and str(REF.with_tag("2")) in str(info.value)


@pytest.mark.parametrize(
    ("host", "insecure", "tls", "schemes"),
    [
        ("localhost:5000", (), (), ("https", "http")),
        ("localhost", (), (), ("https", "http")),
        ("127.0.0.1:5000", (), (), ("https", "http")),
        ("127.1.2.3", (), (), ("https", "http")),
        ("[::1]:5000", (), (), ("https", "http")),
        ("registry.test", (), (), ("https",)),
        ("registry.test:5000", ("registry.test:5000",), (), ("http",)),
        ("registry.test:5000", ("registry.test",), (), ("http",)),
        ("127.0.0.1:5000", ("127.0.0.1:5000",), (), ("http",)),
        ("127.0.0.1:5443", (), ("127.0.0.1:5443",), ("https",)),
        ("10.0.0.1:5000", (), (), ("https",)),
    ],
)
def test_scheme_selection(
    host: str, insecure: tuple[str, ...], tls: tuple[str, ...], schemes: tuple[str, ...]
) -> None:
    """Docker's rule: loopback tries HTTPS then plain HTTP; declared insecure is plain HTTP."""
    assert choose_schemes(host, insecure, tls) == schemes
    assert choose_scheme(host, insecure, tls) == schemes[0]


def test_urls_use_the_api_host_and_chosen_scheme() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(404)

    with client_for(httpx.MockTransport(record), insecure_registries=["r.test:5000"]) as client:
        client.head_manifest(parse_reference("debian:12"))
        client.head_manifest(parse_reference("localhost:5000/acme/app:1"))
        client.head_manifest(parse_reference("r.test:5000/acme/app:1"))
    assert seen == [
        "https://registry-1.docker.io/v2/library/debian/manifests/12",
        "https://localhost:5000/v2/acme/app/manifests/1",  # it answered HTTPS: kept
        "http://r.test:5000/v2/acme/app/manifests/1",
    ]


def test_a_loopback_registry_without_tls_falls_back_to_http_once() -> None:
    seen: list[str] = []

    def plain_http_only(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return httpx.Response(404)

    with client_for(httpx.MockTransport(plain_http_only)) as client:
        for tag in ("1", "2"):
            client.head_manifest(parse_reference(f"127.0.0.1:5000/acme/app:{tag}"))
    assert seen == [
        "https://127.0.0.1:5000/v2/acme/app/manifests/1",
        "http://127.0.0.1:5000/v2/acme/app/manifests/1",
        "http://127.0.0.1:5000/v2/acme/app/manifests/2",
    ]


def test_an_untrusted_loopback_certificate_does_not_fall_back_to_http() -> None:
    seen: list[str] = []

    def untrusted(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")

    with (
        client_for(httpx.MockTransport(untrusted)) as client,
        pytest.raises(RegistryError, match=r"not trusted; give its CA in SSL_CERT_FILE"),
    ):
        client.head_manifest(parse_reference("localhost:5000/acme/app:1"))
    assert seen == ["https://localhost:5000/v2/acme/app/manifests/1"]
