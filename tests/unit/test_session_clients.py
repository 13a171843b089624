"""One HTTP client per registry origin, however many threads ask for it first."""

from __future__ import annotations

import contextlib
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from imagectl.registry import RegistryClient, StaticCredentials, parse_reference


def test_concurrent_first_requests_share_one_client_and_one_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """resolve_many's first HEADs all start at once: they must not each load a TLS
    context (~50 ms of CPU each, 0.5 s for the 10 bases of a plan)."""
    made: list[str] = []
    threads = 8
    together = threading.Barrier(threads)
    inside = threading.Barrier(threads)  # filled only if every thread makes its own context

    def counting(netloc: str, *args: object) -> ssl.SSLContext:
        made.append(netloc)
        with contextlib.suppress(threading.BrokenBarrierError):
            inside.wait(timeout=1)  # a racing client would have every thread here at once
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    monkeypatch.setattr("imagectl.registry.session.ssl_context", counting)
    client = RegistryClient(credentials=StaticCredentials({}))
    url = httpx.URL("https://r.test/v2/")

    def first_request(_: int) -> httpx.Client:
        together.wait(timeout=10)
        return client._session._client_for(url)

    try:
        with ThreadPoolExecutor(threads) as pool:
            clients = list(pool.map(first_request, range(threads)))
    finally:
        client.close()
    assert made == ["r.test"]
    assert len({id(c) for c in clients}) == 1


def test_per_request_work_is_done_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheme rule of a host (it parses IP addresses) runs once, not per request."""
    from imagectl.registry import hosts, session

    calls: list[str] = []

    def counting(host: str, *args: object) -> tuple[str, ...]:
        calls.append(host)
        return hosts.choose_schemes(host, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "choose_schemes", counting)
    seen: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(404)

    client = RegistryClient(
        credentials=StaticCredentials({}), transport=httpx.MockTransport(registry)
    )
    ref = parse_reference("127.0.0.1:5000/acme/app:1")
    with client:
        for _ in range(5):
            assert client.head_manifest(ref) is None
    assert calls == ["127.0.0.1:5000"]
    assert seen == ["https://127.0.0.1:5000/v2/acme/app/manifests/1"] * 5
    assert client.request_count == 5
