"""The HTTP layer of the registry client: retries, authentication, limits, request counting.

One `httpx.Client` per origin (each with the TLS trust of its host, loaded only
for https), shared by all threads; a semaphore bounds the requests in flight;
every request, token requests, retries and redirects included, is counted (the
failed HTTPS handshake of a plain-HTTP loopback registry is no request and is not).
Credentials go only to the registry's own origin (scheme, host and port);
bodies are streamed against the limit of their kind; each request and each phase
has a deadline (`limits`, `deadline`).
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypedDict

import httpx

from imagectl import __version__
from imagectl.domain.reference import DOCKER_HUB, DOCKER_HUB_API
from imagectl.errors import AuthError, RegistryError, RegistryUnreachable
from imagectl.registry import deadline
from imagectl.registry.auth import Authenticator
from imagectl.registry.credentials import CredentialSource
from imagectl.registry.hosts import (
    DEFAULT_CERTS_DIR,
    choose_schemes,
    is_untrusted_certificate,
    ssl_context,
    tls_hint,
)
from imagectl.registry.jsondoc import load_json
from imagectl.registry.limits import Body, Limits, RegistryLimitError, size
from imagectl.registry.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from imagectl.textsafe import clean

log = logging.getLogger("imagectl.registry")


class _Pool(NamedTuple):
    """An origin's connection pool, and the client over it that follows redirects."""

    client: httpx.Client
    transport: httpx.BaseTransport


# Failures that a second attempt cannot fix.
_PERMANENT = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.DecodingError,
    httpx.TooManyRedirects,
)
# What a plain-HTTP server does to a TLS handshake: the https probe falls back.
_NOT_TLS = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
_MAX_REDIRECTS = 5
_SLACK = 0.05  # seconds: a timeout this close to the deadline is the deadline
_PROBE = "imagectl_https_probe"  # request extension: may fall back to plain HTTP (loopback)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_AGENT = f"imagectl/{__version__}"


def server_message(response: httpx.Response) -> str:
    """What the server said (``errors[].code: message``, or the body), made safe to show."""
    try:
        errors = load_json(response.content, "error body").get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
        if parts:
            return clean("; ".join(parts), 300)
    except (RegistryError, ValueError, AttributeError, TypeError):
        pass
    text = response.content[:1000].decode("utf-8", "replace").strip() if response.content else ""
    return clean(text, 200) or clean(response.reason_phrase, 100)


def _where(request: httpx.Request) -> str:
    return f"{request.method} {request.url.copy_with(query=None)}"


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`, the port filled in for the scheme's default."""
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return url.scheme, url.host.lower(), port


def api_host(registry: str) -> str:
    """The host that serves `registry`'s API (Docker Hub's differs from its name)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


class SessionOptions(TypedDict, total=False):
    """How a :class:`RegistrySession` reaches registries (every key optional; see
    `RegistryClient` for what each one means)."""

    transport: httpx.BaseTransport | None
    insecure_registries: Iterable[str]
    tls_registries: Iterable[str]
    ca_file: Path | None
    certs_dir: Path
    timeout: float
    retry: RetryPolicy | None
    max_concurrency: int
    sleep: Callable[[float], None]
    rand: Callable[[], float] | None
    clock: Callable[[], float]
    env: Mapping[str, str] | None


class RegistrySession:
    """Sends registry requests: per-origin clients, retries, authentication, limits, a counter."""

    def __init__(
        self,
        credentials: CredentialSource,
        *,
        transport: httpx.BaseTransport | None = None,
        insecure_registries: Iterable[str] = (),
        tls_registries: Iterable[str] = (),
        ca_file: Path | None = None,
        certs_dir: Path = DEFAULT_CERTS_DIR,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._transport = transport
        self.insecure = frozenset(insecure_registries)
        self.tls = frozenset(tls_registries)
        self._ca_file = ca_file
        self._certs_dir = certs_dir
        self._timeout = httpx.Timeout(timeout)
        self._timeouts = self._timeout.as_dict()  # per connect/read/write, set on each request
        self.retry = retry or RetryPolicy()
        self.limits = limits or Limits()
        self.max_concurrency = max(1, max_concurrency)
        self._sleep = sleep
        self._rand = rand or random.random
        self._env = env if env is not None else os.environ
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._lock = threading.Lock()
        self._creating = threading.Lock()  # held while an origin's client is made
        self._pools: dict[str, _Pool] = {}
        self._schemes: dict[str, str] = {}  # loopback hosts: the scheme that answered
        # Per-request work done once (host -> its candidate schemes; scheme://host -> origin).
        self._candidates: dict[str, tuple[str, ...]] = {}
        self._origins: dict[str, tuple[str, str, int]] = {}
        self._phase: tuple[str, float, float] | None = None  # name, seconds, monotonic end
        self._count = 0
        self.auth = Authenticator(credentials, self.send, clock)

    def __repr__(self) -> str:
        return f"RegistrySession(clients={sorted(self._pools)!r}, requests={self._count})"

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (token requests, retries and redirects included)."""
        with self._lock:
            return self._count

    # ------------------------------------------------------------------ origins

    def _candidate_schemes(self, host: str) -> tuple[str, ...]:
        """`choose_schemes` of `host`, computed once per host (it parses IP addresses)."""
        candidates = self._candidates.get(host)
        if candidates is None:
            candidates = choose_schemes(host, self.insecure, self.tls)
            self._candidates[host] = candidates
        return candidates

    def _schemes_for(self, host: str) -> tuple[str, ...]:
        decided = self._schemes.get(host)  # one dict read: atomic, no lock needed
        return (decided,) if decided else self._candidate_schemes(host)

    def base_url(self, host: str) -> str:
        """``scheme://host`` of a registry API host (the scheme that answered, once known)."""
        return f"{self._schemes_for(host)[0]}://{host}"

    def is_registry_origin(self, url: httpx.URL, registry: str) -> bool:
        """True when `url` has `registry`'s own origin (scheme, host and port)."""
        host = api_host(registry)
        target = origin(url)
        return any(target == self._origin_of(scheme, host) for scheme in self._schemes_for(host))

    def _origin_of(self, scheme: str, host: str) -> tuple[str, str, int]:
        key = f"{scheme}://{host}/"
        found = self._origins.get(key)
        if found is None:
            found = origin(httpx.URL(key))
            self._origins[key] = found
        return found

    # ------------------------------------------------------------------ deadlines

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Bound every request made inside the block by the phase deadline."""
        seconds = self.limits.phase_deadline
        previous = self._phase
        self._phase = (name, seconds, time.monotonic() + seconds)
        try:
            yield
        finally:
            self._phase = previous

    def _deadline(self) -> tuple[float, tuple[str, float, float] | None]:
        """The end of the next attempt (monotonic), and the phase when it ends it first."""
        until = time.monotonic() + self.limits.request_deadline
        phase = self._phase
        if phase is not None and phase[2] < until:
            return phase[2], phase
        return until, None

    def _blame(self, phase: tuple[str, float, float] | None) -> str:
        """The deadline that `_deadline` chose, for a message (made only when it passed)."""
        if phase is not None:
            return f"the {phase[1]:g}s deadline of {phase[0]} (IMAGECTL_PHASE_DEADLINE)"
        seconds = self.limits.request_deadline
        return f"the {seconds:g}s request deadline (IMAGECTL_REQUEST_DEADLINE)"

    def _check_phase(self, request: httpx.Request, host: str, wait: float = 0.0) -> None:
        phase = self._phase
        if phase is not None and time.monotonic() + wait >= phase[2]:
            raise RegistryLimitError(
                f"registry {host}: {_where(request)}: {phase[0]} did not finish within the "
                f"{phase[1]:g}s phase deadline (IMAGECTL_PHASE_DEADLINE)"
            )

    # ------------------------------------------------------------------ sending

    def close(self) -> None:
        """Close every connection pool."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.client.close()

    def _client_for(self, url: httpx.URL) -> httpx.Client:
        return self._pool_for(url).client

    def _pool_for(self, url: httpx.URL) -> _Pool:
        key = f"{url.scheme}://{url.netloc.decode('ascii')}"
        pool = self._pools.get(key)  # one dict read: atomic, no lock needed
        if pool is not None:
            return pool
        # One pool per origin, made once: concurrent first requests (resolve_many) wait
        # for it rather than each loading a TLS context (~50 ms of CPU each) to throw away.
        with self._creating:
            with self._lock:
                pool = self._pools.get(key)
            if pool is None:
                pool = self._new_pool(url)
                with self._lock:
                    self._pools[key] = pool
        return pool

    def _new_pool(self, url: httpx.URL) -> _Pool:
        limits = httpx.Limits(max_connections=self.max_concurrency)
        transport = self._transport
        if transport is None:
            # TLS material only for https: a plain-HTTP loopback registry loads no CA bundle
            # (redirects are followed by `send`, each origin with its own client).
            verify: ssl.SSLContext | bool = False
            if url.scheme == "https":
                netloc = url.netloc.decode("ascii")
                verify = ssl_context(netloc, self._ca_file, self._certs_dir, self._env)
            transport = deadline.install(httpx.HTTPTransport(verify=verify, limits=limits))
        client = httpx.Client(transport=transport, timeout=self._timeout, trust_env=False)
        return _Pool(client, transport)

    def send(
        self, request: httpx.Request, body: Body = Body.ERROR, follow_redirects: bool = False
    ) -> httpx.Response:
        """Send one request, retrying 429/5xx and connection failures with backoff.

        The body is streamed and kept up to the limit of `body` (a larger successful
        body is an error; an error body is cut). Redirects are followed here when asked,
        each origin with its own client, ``Authorization`` dropped across origins.

        Returns:
            The last response, its body read; a retryable status is returned once the
            attempts are used up.

        Raises:
            RegistryError: unreachable (after the retries), too large, or too slow.
        """
        request.extensions["timeout"] = self._timeouts  # per connect/read/write
        headers = request.headers
        if "user-agent" not in headers:
            headers["User-Agent"] = _USER_AGENT
        headers["Accept-Encoding"] = "identity"  # bodies are counted as sent
        for _ in range(_MAX_REDIRECTS + 1):
            response, following = self._send_retrying(request, body, follow_redirects)
            if not (follow_redirects and following is not None):
                return response
            request = following
        raise RegistryError(f"{request.method} {request.url}: more than {_MAX_REDIRECTS} redirects")

    def _send_retrying(
        self, request: httpx.Request, body: Body, follow: bool
    ) -> tuple[httpx.Response, httpx.Request | None]:
        host = request.url.netloc.decode("ascii")
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            self._check_phase(request, host)
            try:
                response, following = self._attempt(request, body, host, follow)
            except httpx.HTTPError as exc:
                where = _where(request)
                hint = tls_hint(exc, host)
                if hint is not None or attempt == attempts or isinstance(exc, _PERMANENT):
                    tried = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise RegistryUnreachable(
                        f"cannot reach {host} ({where}): "
                        f"{hint or clean(f'{type(exc).__name__}: {exc}', 300)}{tried}"
                    ) from exc
                delay = self.retry.delay(attempt, self._rand())
                self._check_phase(request, host, delay)
                log.info("%s failed (%s), retrying in %.1fs", where, type(exc).__name__, delay)
                self._sleep(delay)
                continue
            status = response.status_code
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %s", _where(request), status)
            if status in RETRY_STATUSES and attempt < attempts:
                after = parse_retry_after(response.headers.get("retry-after"))
                delay = self.retry.delay(attempt, self._rand(), after)
                self._check_phase(request, host, delay)
                log.info("%s -> %s, retrying in %.1fs", _where(request), status, delay)
                self._sleep(delay)
                continue
            return response, following
        raise AssertionError("unreachable: the loop returns or raises")

    def _attempt(
        self, request: httpx.Request, body: Body, host: str, follow: bool
    ) -> tuple[httpx.Response, httpx.Request | None]:
        """One exchange; a loopback host's first https exchange falls back to plain HTTP."""
        if request.url.scheme != "https" or not request.extensions.get(_PROBE):
            return self._exchange(request, body, host, follow)
        if self._candidate_schemes(host) != ("https", "http"):
            return self._exchange(request, body, host, follow)
        decided = self._schemes.get(host)
        if decided == "http":  # built before the fallback was known
            request.url = request.url.copy_with(scheme="http")
            return self._exchange(request, body, host, follow)
        try:
            result = self._exchange(request, body, host, follow)
        except _NOT_TLS as exc:
            if is_untrusted_certificate(exc):
                raise
            failure = type(exc).__name__
        else:
            if decided is None:
                with self._lock:
                    self._schemes.setdefault(host, "https")
            return result
        # outside the `except`: a later failure must not carry the TLS error as its context
        log.info("%s does not answer HTTPS (%s): using plain HTTP", host, failure)
        with self._lock:
            self._schemes.setdefault(host, "http")
            self._count -= 1  # a failed TLS handshake is no HTTP request
        request.url = request.url.copy_with(scheme="http")
        return self._exchange(request, body, host, follow)

    def _exchange(
        self, request: httpx.Request, body: Body, host: str, follow: bool
    ) -> tuple[httpx.Response, httpx.Request | None]:
        """One request and its response, the body read.

        A request whose redirect is to be followed goes through the origin's
        `httpx.Client`, which builds the next request (``Authorization`` dropped across
        origins); every other one straight to the origin's transport: a client's cookie
        extraction, auth flow, redirect loop and event hooks cost CPU that a registry
        request does not need (a request built here never carried the client's cookies).
        """
        until, phase = self._deadline()
        pool = self._pool_for(request.url)
        with self._lock:
            self._count += 1
        try:
            with self._slots, deadline.deadline(until):
                if follow:
                    response = pool.client.send(request, stream=True)
                else:
                    response = pool.transport.handle_request(request)
                    response.request = request
                try:
                    content = self._read_body(response, body, until, phase, host)
                finally:
                    response.close()
        except httpx.TimeoutException as exc:
            if time.monotonic() < until - _SLACK:  # a per-operation timeout: retried
                raise
            raise RegistryLimitError(
                f"registry {host}: {_where(request)} did not finish within {self._blame(phase)}"
            ) from exc
        following = response.next_request if follow and response.is_redirect else None
        headers: httpx.Headers | list[tuple[str, str]] = response.headers
        if "content-encoding" in response.headers:  # identity only: the header would lie
            items = response.headers.multi_items()
            headers = [(k, v) for k, v in items if k.lower() != "content-encoding"]
        final = httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=response.request,
            extensions={"reason_phrase": response.extensions.get("reason_phrase", b"")},
        )
        return final, following

    def _read_body(
        self,
        response: httpx.Response,
        body: Body,
        until: float,
        phase: tuple[str, float, float] | None,
        host: str,
    ) -> bytes:
        """The body, streamed: a successful one refused past its limit, an error one cut."""
        request = response.request
        success = response.is_success and request.method != "HEAD"
        kind = body if success else Body.ERROR
        limit = self.limits.body(kind)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            if success:
                raise RegistryLimitError(
                    f"registry {host}: {_where(request)}: sent a {clean(encoding, 40)}-encoded "
                    "body although none was asked for"
                )
            return b""  # an error body in an encoding nobody asked for: its words are lost
        declared = response.headers.get("content-length", "")
        if success and declared.isdigit() and int(declared) > limit:
            raise self._too_large(host, _where(request), kind, limit)
        chunks: list[bytes] = []
        total = 0
        # The transport's stream itself: the body is identity-encoded (checked above), so
        # the bytes as sent, without `iter_bytes`' decoder and chunker layers per request.
        stream = response.stream
        if not isinstance(stream, httpx.SyncByteStream):
            raise TypeError("a registry response needs a synchronous stream")
        for chunk in stream:
            total += len(chunk)
            if total > limit:
                if success:
                    raise self._too_large(host, _where(request), kind, limit)
                chunks.append(chunk[: limit - (total - len(chunk))])
                break
            chunks.append(chunk)
            if time.monotonic() >= until:
                raise RegistryLimitError(
                    f"registry {host}: {_where(request)} did not finish within {self._blame(phase)}"
                )
        return b"".join(chunks)

    @staticmethod
    def _too_large(host: str, where: str, kind: Body, limit: int) -> RegistryLimitError:
        return RegistryLimitError(
            f"registry {host}: {where}: the {kind.value} body is larger than the "
            f"{size(limit)} limit of a {kind.value}"
        )

    def request(
        self,
        method: str,
        registry: str,
        url: str,
        *,
        scope: str,
        subject: str,
        expect: Collection[int],
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        follow_redirects: bool = False,
        body: Body = Body.NONE,
    ) -> httpx.Response:
        """An authenticated registry request whose status must be in `expect`.

        Args:
            method: HTTP method.
            registry: the registry as named in references (its credentials' key).
            url: the full URL; it must have the registry's own origin.
            scope: the token scope the request needs (``repository:acme/x:pull``).
            subject: what is being done, for error messages (``GET manifest ref``).
            expect: the statuses the caller handles.
            headers: extra request headers.
            content: the request body.
            follow_redirects: follow redirects (blob downloads).
            body: what the response body is (decides its size limit).

        Raises:
            AuthError: 401/403 after answering the registry's challenge once.
            RegistryError: the URL is another origin than the registry's, any other
                status outside `expect`, a limit was passed, or the registry is unreachable.
        """
        target = httpx.URL(url)
        if not self.is_registry_origin(target, registry):
            raise RegistryLimitError(
                f"{subject}: refusing to send registry {registry}'s request to another "
                f"origin, {clean(target.copy_with(query=None, fragment=None), 200)}"
            )

        def build(authorization: str | None) -> httpx.Request:
            merged = dict(headers or {})
            if authorization:
                merged["Authorization"] = authorization
            # only the registry's own requests may fall back from HTTPS (never a token realm)
            extensions = {_PROBE: True}
            return httpx.Request(
                method, target, headers=merged, content=content, extensions=extensions
            )

        sent = self.auth.header(registry, scope)
        response = self.send(build(sent), body, follow_redirects)
        if response.status_code == 401:
            answer = self.auth.answer(registry, scope, response, sent)
            if answer != sent:
                response = self.send(build(answer), body, follow_redirects)
        if response.status_code in (401, 403) and response.status_code not in expect:
            refused = "refused" if response.status_code == 401 else "denied access to"
            raise AuthError(
                f"{subject}: registry {registry} {refused} {self.auth.who(registry)}: "
                f"{server_message(response)}"
            )
        if response.status_code not in expect:
            raise self.failure(response, subject, registry)
        return response

    def failure(self, response: httpx.Response, subject: str, registry: str) -> RegistryError:
        """A RegistryError naming what failed, the registry, the status and the server's words."""
        tried = ""
        if response.status_code in RETRY_STATUSES and self.retry.attempts > 1:
            tried = f" (after {self.retry.attempts} attempts)"
        return RegistryError(
            f"{subject}: registry {registry} answered HTTP {response.status_code} "
            f"{clean(response.reason_phrase, 100)}: {server_message(response)}{tried}"
        )
