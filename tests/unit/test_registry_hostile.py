"""A hostile registry, in memory: credentials stay on the registry's origin, bodies,
deadlines and listings are bounded, and registry-sourced text is validated or made safe."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from imagectl.errors import AuthError, RegistryError, UsageError
from imagectl.registry import Credentials, RegistryClient, StaticCredentials, parse_reference
from imagectl.registry.limits import Body, Limits, RegistryLimitError
from imagectl.registry.manifests import labels_of
from imagectl.textsafe import clean, for_rich, is_clean
from tests.fixtures.fake_registry import OCI_MANIFEST, FakeRegistry, digest_of

CANARY = "canary-Passw0rd-hostile"
BASIC = "Basic " + base64.b64encode(f"u:{CANARY}".encode()).decode()
REF = parse_reference("registry.test/acme/app:1")
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, **kw: object) -> RegistryClient:
    return RegistryClient(
        credentials=StaticCredentials({"registry.test": Credentials("u", CANARY)}),
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        **kw,  # type: ignore[arg-type]
    )


def basic_registry(extra: Handler) -> tuple[Handler, list[httpx.Request]]:
    """A basic-auth registry.test; `extra` answers every authenticated request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "registry.test" and request.headers.get("authorization") != BASIC:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return extra(request)

    return handle, seen


def leaked(seen: list[httpx.Request]) -> list[str]:
    return [
        str(r.url)
        for r in seen
        if (r.url.host != "registry.test" and CANARY in json.dumps(dict(r.headers)))
        or (r.url.host != "registry.test" and r.headers.get("authorization"))
    ]


# ---------------------------------------------------------------- item 1: origins


@pytest.mark.parametrize(
    "link",
    [
        "http://other.test/v2/acme/app/tags/list?last=a",  # another host, and a downgrade
        "https://other.test/v2/acme/app/tags/list?last=a",  # another host
        "http://registry.test/v2/acme/app/tags/list?last=a",  # same host, plain HTTP
        "https://registry.test:444/v2/acme/app/tags/list?last=a",  # same host, other port
        "//other.test/v2/acme/app/tags/list",  # scheme-relative
    ],
)
def test_a_pagination_link_to_another_origin_is_refused(link: str) -> None:
    def tags(request: httpx.Request) -> httpx.Response:
        if request.url.host != "registry.test":
            return httpx.Response(200, json={"name": "acme/app", "tags": ["evil"]})
        return httpx.Response(
            200, json={"name": "acme/app", "tags": ["1"]}, headers={"Link": f'<{link}>; rel="next"'}
        )

    handle, seen = basic_registry(tags)
    with (
        client_for(handle) as client,
        pytest.raises(RegistryLimitError, match=r"Link to another origin.*refusing"),
    ):
        client.list_tags(REF)
    assert {r.url.host for r in seen} == {"registry.test"}
    assert all(r.url.port in (None, 443) and r.url.scheme == "https" for r in seen)


def test_a_same_origin_link_is_followed_with_credentials() -> None:
    def tags(request: httpx.Request) -> httpx.Response:
        if "last" in request.url.params:
            return httpx.Response(200, json={"tags": ["2"]})
        link = '</v2/acme/app/tags/list?last=1>; rel="next"'
        return httpx.Response(200, json={"tags": ["1"]}, headers={"Link": link})

    handle, seen = basic_registry(tags)
    with client_for(handle) as client:
        assert client.list_tags(REF) == ["1", "2"]
    assert seen[-1].headers["authorization"] == BASIC


def test_a_catalog_link_to_another_origin_is_an_error_not_unknown() -> None:
    def catalog(request: httpx.Request) -> httpx.Response:
        link = '<http://other.test/v2/_catalog?last=x>; rel="next"'
        return httpx.Response(200, json={"repositories": ["acme/app"]}, headers={"Link": link})

    handle, seen = basic_registry(catalog)
    with client_for(handle) as client, pytest.raises(RegistryLimitError, match="another origin"):
        client.list_repositories(REF)
    assert not leaked(seen) and {r.url.host for r in seen} == {"registry.test"}


def test_a_plain_http_realm_for_an_https_registry_is_refused() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        challenge = 'Bearer realm="http://auth.test/token",service="s"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with (
        client_for(handle) as client,
        pytest.raises(RegistryError, match=r"plain-HTTP token realm.*without TLS"),
    ):
        client.head_manifest(REF)
    assert [r.url.host for r in seen] == ["registry.test"]


def test_a_realm_on_another_https_host_gets_the_credentials_as_docker_does() -> None:
    fake = FakeRegistry(auth="bearer", users={"u": CANARY})  # realm https://auth.test/token
    fake.add_image("acme/app", "1")
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    with client_for(spy) as client:
        assert client.head_manifest(REF) is not None
    token_requests = [r for r in seen if r.url.host == "auth.test"]
    assert token_requests and token_requests[0].headers["authorization"] == BASIC


def test_a_request_for_another_origin_is_never_sent() -> None:
    handle, seen = basic_registry(lambda r: httpx.Response(200))
    with client_for(handle) as client, pytest.raises(RegistryLimitError, match="another origin"):
        client._session.request(
            "GET",
            "registry.test",
            "https://other.test/v2/",
            scope="registry:catalog:*",
            subject="probe",
            expect={200},
        )
    assert seen == []


def test_a_redirect_to_another_origin_drops_the_credentials() -> None:
    blob = b'{"os":"linux"}'
    digest = digest_of(blob)

    def blobs(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.test":
            return httpx.Response(200, content=blob)
        return httpx.Response(307, headers={"Location": f"https://cdn.test/b/{digest}"})

    handle, seen = basic_registry(blobs)
    with client_for(handle) as client:
        assert client.get_blob(REF, digest) == blob
    cdn = [r for r in seen if r.url.host == "cdn.test"]
    assert cdn and "authorization" not in cdn[0].headers and not leaked(seen)


# ---------------------------------------------------------------- item 2: bounds


class Endless(httpx.SyncByteStream):
    """An endless body; counts what was taken from it."""

    def __init__(self, chunk: bytes = b"[" * 65536, pause: float = 0.0) -> None:
        self.chunk, self.pause, self.sent = chunk, pause, 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if self.pause:
                time.sleep(self.pause)  # a trickling server, simulated
            self.sent += len(self.chunk)
            yield self.chunk


@pytest.mark.parametrize(
    ("call", "limit"),
    [
        (lambda c: c.get_manifest(REF), "4 MiB limit of a manifest"),
        (lambda c: c.list_tags(REF), "4 MiB limit of a listing"),
        (lambda c: c.get_blob(REF, "sha256:" + "a" * 64), "8 MiB limit of a config"),
    ],
)
def test_an_endless_body_stops_at_its_limit(
    call: Callable[[RegistryClient], object], limit: str
) -> None:
    body = Endless()
    handle, _ = basic_registry(lambda r: httpx.Response(200, stream=body))
    with client_for(handle) as client, pytest.raises(RegistryLimitError) as info:
        call(client)
    assert limit in str(info.value) and "registry.test" in str(info.value)
    assert body.sent <= 8 * 1024 * 1024 + 65536  # stopped at the limit, not at the end


def test_a_declared_length_past_the_limit_is_refused_before_reading() -> None:
    body = Endless()
    headers = {"Content-Length": str(200 * 1024 * 1024)}
    handle, _ = basic_registry(lambda r: httpx.Response(200, stream=body, headers=headers))
    with client_for(handle) as client, pytest.raises(RegistryLimitError, match="4 MiB"):
        client.get_manifest(REF)
    assert body.sent == 0


def test_an_endless_token_reply_stops_at_64_kib() -> None:
    body = Endless(b"x" * 4096)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return httpx.Response(200, stream=body)
        challenge = 'Bearer realm="https://auth.test/token",service="s"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with client_for(handle) as client, pytest.raises(RegistryLimitError, match="64 KiB limit"):
        client.head_manifest(REF)
    assert body.sent <= 64 * 1024 + 4096


def test_an_endless_error_body_is_cut_not_refused() -> None:
    body = Endless(b"e" * 4096)
    handle, _ = basic_registry(lambda r: httpx.Response(400, stream=body))
    with client_for(handle) as client, pytest.raises(RegistryError, match="HTTP 400") as info:
        client.get_manifest(REF)
    assert len(str(info.value)) < 600 and body.sent <= 64 * 1024 + 4096


def test_a_trickling_body_ends_at_the_request_deadline() -> None:
    body = Endless(b" ", pause=0.05)
    handle, _ = basic_registry(lambda r: httpx.Response(200, stream=body))
    limits = Limits(request_deadline=0.5)
    started = time.monotonic()
    with (
        client_for(handle, limits=limits) as client,
        pytest.raises(
            RegistryLimitError, match=r"0\.5s request deadline.*IMAGECTL_REQUEST_DEADLINE"
        ),
    ):
        client.get_manifest(REF)
    assert time.monotonic() - started < 3


def test_the_phase_deadline_bounds_all_requests_of_a_phase() -> None:
    body = Endless(b" ", pause=0.05)
    handle, _ = basic_registry(lambda r: httpx.Response(200, stream=body))
    limits = Limits(request_deadline=30, phase_deadline=0.4)
    with (
        client_for(handle, limits=limits) as client,
        client.phase("planning"),
        pytest.raises(RegistryLimitError, match=r"deadline of planning.*IMAGECTL_PHASE_DEADLINE"),
    ):
        client.get_manifest(REF)


def test_an_endless_chain_of_links_stops_at_the_page_cap() -> None:
    calls: list[str] = []

    def chain(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        link = f'</v2/acme/app/tags/list?last=t{len(calls)}>; rel="next"'
        return httpx.Response(200, json={"tags": [f"t{len(calls)}"]}, headers={"Link": link})

    handle, _ = basic_registry(chain)
    with (
        client_for(handle, limits=Limits(max_pages=25)) as client,
        pytest.raises(RegistryLimitError, match=r"more than 25 pages.*IMAGECTL_MAX_PAGES"),
    ):
        client.list_tags(REF)
    assert len(calls) == 25


def test_limits_from_the_environment() -> None:
    env = {
        "IMAGECTL_REQUEST_DEADLINE": "5",
        "IMAGECTL_PHASE_DEADLINE": "90.5",
        "IMAGECTL_MAX_PAGES": "7",
    }
    limits = Limits.from_env(env)
    assert (limits.request_deadline, limits.phase_deadline, limits.max_pages) == (5, 90.5, 7)
    assert limits.body(Body.MANIFEST) == 4 * 1024 * 1024
    assert Limits.from_env({}) == Limits()
    for bad in ({"IMAGECTL_MAX_PAGES": "1.5"}, {"IMAGECTL_REQUEST_DEADLINE": "-1"}):
        with pytest.raises(UsageError, match=next(iter(bad))):
            Limits.from_env(bad)


# ---------------------------------------------------------------- item 3: JSON


def test_deeply_nested_json_is_a_clean_error() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    handle, _ = basic_registry(lambda r: httpx.Response(200, content=nested))
    with client_for(handle) as client, pytest.raises(RegistryError, match="nested too deeply"):
        client.get_manifest(REF)


# ---------------------------------------------------------------- item 4: text


@pytest.mark.parametrize(
    "digest", ["[/]", "sha256:[red]x[/red]", "sha256:" + "A" * 64, "md5:abc", "\x1b[2J"]
)
def test_a_hostile_docker_content_digest_is_refused(digest: str) -> None:
    headers = {"Docker-Content-Digest": digest, "Content-Type": OCI_MANIFEST}
    handle, _ = basic_registry(lambda r: httpx.Response(200, headers=headers))
    with client_for(handle) as client, pytest.raises(RegistryError, match="invalid digest") as info:
        client.head_manifest(REF)
    assert is_clean(str(info.value).split("invalid digest")[1])


def test_tags_outside_the_grammar_are_refused() -> None:
    handle, _ = basic_registry(lambda r: httpx.Response(200, json={"tags": ["1", "x\n::error::y"]}))
    with client_for(handle) as client, pytest.raises(RegistryError, match="invalid tag") as info:
        client.list_tags(REF)
    assert "\n" not in str(info.value) and "::error" not in str(info.value)


def test_server_words_are_made_safe_in_errors() -> None:
    hostile = "bad\n::error file=x::forged\n::add-mask::secret\x1b[2J\x1b]8;;http://e\x1b\\[/]"
    body = {"errors": [{"code": "DENIED", "message": hostile}]}
    handle, _ = basic_registry(lambda r: httpx.Response(400, json=body))
    with client_for(handle) as client, pytest.raises(RegistryError) as info:
        client.get_manifest(REF)
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text and "::" not in text
    assert "forged" in text  # shown, inert


def test_labels_outside_their_grammar_are_dropped() -> None:
    config = {
        "config": {
            "Labels": {
                "org.opencontainers.image.base.name": "[/]",
                "org.opencontainers.image.base.digest": "sha256:[bold]x",
                "dev.imagectl.inputs": "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\",
                "org.opencontainers.image.version": "1.2.3",
                "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
                "free.text": "anything [/] goes",
                "not.a.string": 5,
            }
        }
    }
    assert labels_of(config) == {
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        "free.text": "anything [/] goes",
    }


def test_textsafe() -> None:
    assert clean("a\nb\r\x1b[31m\x9b\u202e") == "a\\nb\\r\\e[31m\\x9b\\u202e"
    assert clean("::error::x") == ": :error: :x" and "::" not in clean(":::")
    assert for_rich("[/]") == "\\[/]"
    assert clean("x" * 1000, 10) == "x" * 9 + "…"
    assert is_clean("sha256:abc") and not is_clean("a\nb")


def test_no_tls_material_for_a_plain_http_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("TLS material loaded for a plain-HTTP registry")

    monkeypatch.setattr("imagectl.registry.session.ssl_context", refuse)
    client = RegistryClient(credentials=StaticCredentials({}), insecure_registries=["r.test"])
    client._session._client_for(httpx.URL("http://r.test/v2/"))
    client.close()
    with pytest.raises(AssertionError, match="TLS material"):
        client._session._client_for(httpx.URL("https://other.test/v2/"))


def test_an_auth_error_names_no_secret() -> None:
    handle, _ = basic_registry(lambda r: httpx.Response(403, json={"errors": []}))
    with client_for(handle) as client, pytest.raises(AuthError) as info:
        client.get_manifest(REF)
    assert CANARY not in str(info.value)


def test_every_request_carries_the_per_operation_timeouts() -> None:
    timeouts: list[object] = []

    def spy(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions.get("timeout"))
        return httpx.Response(404)

    with client_for(spy, timeout=7.0) as client:
        client.head_manifest(REF)
    assert timeouts == [{"connect": 7.0, "read": 7.0, "write": 7.0, "pool": 7.0}]


def test_a_failure_after_the_http_fallback_is_retried_not_taken_for_tls() -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        if len(calls) == 2:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(404)

    with client_for(flaky) as client:
        assert client.head_manifest(parse_reference("127.0.0.1:5000/acme/app:1")) is None
    assert [u.split(":")[0] for u in calls] == ["https", "http", "http"]


def test_the_request_deadline_cuts_a_trickle_at_the_socket() -> None:
    """A real loopback socket sending one header byte every 0.1 s: no read ever times out,
    yet the request ends at its deadline (the deadline-aware network backend)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            while not stop.wait(0.1):  # the trickle (the fault itself)
                try:
                    conn.sendall(b"a")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    client = RegistryClient(
        credentials=StaticCredentials({}),
        insecure_registries=[host],
        limits=Limits(request_deadline=1.0),
        sleep=lambda _: None,
    )
    started = time.monotonic()
    try:
        with client, pytest.raises(RegistryLimitError, match="1s request deadline"):
            client.head_manifest(parse_reference(f"{host}/acme/app:1"))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 5
