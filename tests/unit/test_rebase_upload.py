"""`push_small_blob`: one request where the registry takes a single-POST upload."""

from __future__ import annotations

import httpx
import pytest

from imagectl.errors import RegistryError
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.credentials import StaticCredentials
from imagectl.registry.manifests import compute_digest

REF = parse_reference("registry.test/acme/app:1")
DATA = b'{"config":{}}'


def _client(handler: httpx.MockTransport) -> RegistryClient:
    return RegistryClient(credentials=StaticCredentials({}), transport=handler)


def test_a_registry_taking_a_single_post_gets_one_request() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content))
        digest = request.url.params["digest"]
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})

    with _client(httpx.MockTransport(registry)) as client:
        assert client.push_small_blob(REF, DATA) == compute_digest(DATA)
        assert client.push_small_blob(REF, DATA) == compute_digest(DATA)
    url = f"https://registry.test/v2/acme/app/blobs/uploads/?digest={compute_digest(DATA)}"
    assert seen == [("POST", url, DATA)] * 2


def test_a_registry_starting_a_session_gets_the_bytes_by_put_and_is_remembered() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/acme/app/blobs/uploads/u1?s=1"})
        assert request.url.params["digest"] == compute_digest(DATA)
        return httpx.Response(201)

    with _client(httpx.MockTransport(registry)) as client:
        client.push_small_blob(REF, DATA)
        client.push_small_blob(REF, DATA)
    post, put = ("POST", "/v2/acme/app/blobs/uploads/"), ("PUT", "/v2/acme/app/blobs/uploads/u1")
    assert seen == [(*post, DATA), (*put, DATA), (*post, b""), (*put, DATA)]


def test_a_registry_storing_other_bytes_is_an_error() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})

    with (
        _client(httpx.MockTransport(registry)) as client,
        pytest.raises(RegistryError, match=r"the registry stored sha256:0+, not sha256:"),
    ):
        client.push_small_blob(REF, DATA)


def test_a_registry_refusing_the_single_post_gets_a_session_upload() -> None:
    seen: list[tuple[str, str]] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url.params.get("digest", "-"))))
        if request.method == "POST" and "digest" in request.url.params:
            return httpx.Response(400, json={"errors": [{"code": "UNSUPPORTED"}]})
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/acme/app/blobs/uploads/u1"})
        return httpx.Response(201)

    with _client(httpx.MockTransport(registry)) as client:
        client.push_small_blob(REF, DATA)
        client.push_small_blob(REF, DATA)
    digest = compute_digest(DATA)
    assert seen == [
        ("POST", digest),
        ("POST", "-"),
        ("PUT", digest),
        ("POST", "-"),
        ("PUT", digest),
    ]


@pytest.mark.parametrize(
    ("location", "put_url"),
    [
        (
            "/v2/acme/app/blobs/uploads/u1?_state=a%3D",
            "https://registry.test/v2/acme/app/blobs/uploads/u1?_state=a%3D&digest=",
        ),
        (
            "/v2/acme/app/blobs/uploads/u1",
            "https://registry.test/v2/acme/app/blobs/uploads/u1?digest=",
        ),
        (  # distribution 2.8's form: an absolute URL on the registry's own origin
            "https://registry.test/v2/acme/app/blobs/uploads/u1?_state=a%3D",
            "https://registry.test/v2/acme/app/blobs/uploads/u1?_state=a%3D&digest=",
        ),
        ("u1?s=1", "https://registry.test/v2/acme/app/blobs/uploads/u1?s=1&digest="),
        ("https://registry.test/up/u1?s=1#x", "https://registry.test/up/u1?s=1&digest="),
        ("//registry.test/up/u1", "https://registry.test/up/u1?digest="),
    ],
)
def test_the_put_goes_where_the_location_says(location: str, put_url: str) -> None:
    puts: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": location})
        puts.append(str(request.url))
        return httpx.Response(201)

    with _client(httpx.MockTransport(registry)) as client:
        client.push_small_blob(REF, DATA)
    assert puts == [put_url + compute_digest(DATA)]


def test_a_location_on_the_registrys_origin_is_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    joins: list[str] = []
    join = httpx.URL.join

    def counting(self: httpx.URL, url: str) -> httpx.URL:
        joins.append(url)
        return join(self, url)

    monkeypatch.setattr(httpx.URL, "join", counting)
    location = "https://registry.test/v2/acme/app/blobs/uploads/u1?_state=" + "s" * 400
    test_the_put_goes_where_the_location_says(location, location + "&digest=")
    test_the_put_goes_where_the_location_says(
        "u1", "https://registry.test/v2/acme/app/blobs/uploads/u1?digest="
    )
    assert joins == ["u1"]
