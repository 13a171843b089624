"""Retries: capped exponential backoff with jitter, Retry-After, attempts, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from imagectl.errors import RegistryError
from imagectl.registry import RegistryClient, RetryPolicy, StaticCredentials, parse_reference
from imagectl.registry.retry import parse_retry_after
from tests.fixtures.fake_registry import FakeRegistry, errors

REF = parse_reference("registry.test/acme/app:1")


def make_client(
    fake: FakeRegistry, sleeps: list[float], attempts: int = 5, **kw: object
) -> RegistryClient:
    return RegistryClient(
        credentials=StaticCredentials({}),
        transport=fake.transport,
        retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=4.0),
        sleep=sleeps.append,
        rand=lambda: 0.5,
        **kw,  # type: ignore[arg-type]
    )


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    assert [policy.delay(n, 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert [policy.delay(n, 0.999) for n in range(1, 6)] == pytest.approx([1, 2, 4, 8, 10], 0.01)
    assert policy.delay(3, 0.25, retry_after=7.0) == 7.0
    assert policy.delay(3, 0.25, retry_after=1e6) == policy.max_retry_after
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    fake = FakeRegistry()
    digest = fake.add_image("acme/app", "1")
    fake.queued += [errors("UNAVAILABLE", "busy", 503), httpx.Response(502)]
    sleeps: list[float] = []
    with make_client(fake, sleeps) as client:
        info = client.head_manifest(REF)
        assert info is not None and info.digest == digest
        assert sleeps == [0.375, 0.75]  # ceiling/2 + 0.5*ceiling/2 for 0.5 s, 1 s
        assert client.request_count == 3


def test_429_honours_retry_after_seconds_and_date() -> None:
    fake = FakeRegistry()
    fake.add_image("acme/app", "1")
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    fake.queued += [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"errors": []}),
        httpx.Response(429, headers={"Retry-After": when}),
    ]
    sleeps: list[float] = []
    with make_client(fake, sleeps) as client:
        assert client.head_manifest(REF) is not None
    assert sleeps[0] == 7.0
    assert 15 < sleeps[1] <= 20


def test_attempts_are_bounded_and_the_error_says_what_the_server_said() -> None:
    fake = FakeRegistry()
    fake.queued += [errors("UNAVAILABLE", "maintenance window", 503) for _ in range(10)]
    sleeps: list[float] = []
    with make_client(fake, sleeps, attempts=3) as client:
        with pytest.raises(RegistryError) as info:
            client.get_manifest(REF)
        assert client.request_count == 3
    assert len(sleeps) == 2
    text = str(info.value)
    assert "registry.test/acme/app:1" in text
    assert "503" in text and "UNAVAILABLE: maintenance window" in text
    assert "after 3 attempts" in text


def test_connection_errors_and_timeouts_are_retried() -> None:
    fake = FakeRegistry()
    fake.add_image("acme/app", "1")
    fake.queued += [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    sleeps: list[float] = []
    with make_client(fake, sleeps) as client:
        assert client.head_manifest(REF) is not None
    assert len(sleeps) == 2


def test_unreachable_registry_gives_up_with_a_clear_error() -> None:
    fake = FakeRegistry()
    fake.queued += [httpx.ConnectError("Connection refused") for _ in range(10)]
    sleeps: list[float] = []
    with (
        make_client(fake, sleeps, attempts=4) as client,
        pytest.raises(RegistryError, match=r"cannot reach registry\.test.*after 4 attempts"),
    ):
        client.head_manifest(REF)
    assert len(sleeps) == 3


def test_untrusted_certificate_is_not_retried_and_explained() -> None:
    fake = FakeRegistry()
    fake.queued.append(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed"))
    sleeps: list[float] = []
    with make_client(fake, sleeps) as client:
        with pytest.raises(
            RegistryError, match=r"not trusted.*SSL_CERT_FILE.*certs\.d/registry\.test/ca\.crt"
        ):
            client.head_manifest(REF)
        assert client.request_count == 1
    assert sleeps == []


def test_client_errors_are_not_retried() -> None:
    fake = FakeRegistry()
    sleeps: list[float] = []
    with make_client(fake, sleeps) as client:
        with pytest.raises(RegistryError, match=r"MANIFEST_UNKNOWN: manifest unknown"):
            client.get_manifest(REF)
        assert client.head_manifest(REF) is None
        assert client.request_count == 2
    assert sleeps == []


def test_requests_in_flight_are_bounded() -> None:
    fake = FakeRegistry()
    refs = [parse_reference(f"registry.test/acme/app:{n}") for n in range(12)]
    for ref in refs:
        fake.add_image("acme/app", str(ref.tag))
    in_flight, peak, lock = 0, 0, threading.Lock()

    def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.01)
        with lock:
            in_flight -= 1
        return fake.handle(request)

    client = RegistryClient(
        credentials=StaticCredentials({}), transport=httpx.MockTransport(slow), max_concurrency=3
    )
    with client:
        found = client.resolve_many(refs + refs)
    assert len(found) == 12 and all(found.values())
    assert 1 < peak <= 3
    assert client.request_count == 12  # each distinct reference once
