"""The HTTP layer of the registry client: retries, authentication, request counting.

One `httpx.Client` per origin (each with the TLS trust of its host), shared by
all threads; a semaphore bounds the requests in flight; every request, token
requests, retries and redirects included, is counted.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import httpx

from imagectl import __version__
from imagectl.errors import AuthError, RegistryError
from imagectl.registry.auth import Authenticator
from imagectl.registry.credentials import CredentialSource
from imagectl.registry.hosts import DEFAULT_CERTS_DIR, choose_scheme, ssl_context, tls_hint
from imagectl.registry.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

log = logging.getLogger("imagectl.registry")

# Failures that a second attempt cannot fix.
_PERMANENT = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.DecodingError,
    httpx.TooManyRedirects,
)


def server_message(response: httpx.Response) -> str:
    """What the server said: the distribution API's ``errors[].code: message``, or the body."""
    try:
        errors = response.json().get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        pass
    text = response.text.strip().replace("\n", " ") if response.content else ""
    return text[:200] or response.reason_phrase


class RegistrySession:
    """Sends registry requests: per-host clients, retries, authentication, a request counter."""

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
    ) -> None:
        self._transport = transport
        self.insecure = frozenset(insecure_registries)
        self.tls = frozenset(tls_registries)
        self._ca_file = ca_file
        self._certs_dir = certs_dir
        self._timeout = httpx.Timeout(timeout)
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self._sleep = sleep
        self._rand = rand or random.random
        self._env = env if env is not None else os.environ
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._lock = threading.Lock()
        self._clients: dict[str, httpx.Client] = {}
        self._count = 0
        self.auth = Authenticator(credentials, self.send, clock)

    def __repr__(self) -> str:
        return f"RegistrySession(clients={sorted(self._clients)!r}, requests={self._count})"

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (token requests, retries and redirects included)."""
        with self._lock:
            return self._count

    def base_url(self, host: str) -> str:
        """``scheme://host`` of a registry API host."""
        return f"{choose_scheme(host, self.insecure, self.tls)}://{host}"

    def close(self) -> None:
        """Close every connection pool."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _count_request(self, request: httpx.Request) -> None:
        with self._lock:
            self._count += 1

    def _client_for(self, url: httpx.URL) -> httpx.Client:
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        with self._lock:
            client = self._clients.get(origin)
        if client is not None:
            return client
        verify: ssl.SSLContext | bool = True
        if url.scheme == "https" and self._transport is None:
            verify = ssl_context(
                url.netloc.decode("ascii"), self._ca_file, self._certs_dir, self._env
            )
        limits = httpx.Limits(max_connections=self.max_concurrency)
        created = httpx.Client(
            transport=self._transport,
            verify=verify,
            timeout=self._timeout,
            limits=limits,
            trust_env=False,
            event_hooks={"request": [self._count_request]},
        )
        with self._lock:
            client = self._clients.setdefault(origin, created)
        if client is not created:
            created.close()
        return client

    def send(self, request: httpx.Request, follow_redirects: bool = False) -> httpx.Response:
        """Send one request, retrying 429/5xx and connection failures with backoff.

        Returns:
            The last response, its body read; a retryable status is returned once the
            attempts are used up.

        Raises:
            RegistryError: the server could not be reached (after the retries).
        """
        request.extensions["timeout"] = self._timeout.as_dict()
        request.headers.setdefault("User-Agent", f"imagectl/{__version__}")
        client = self._client_for(request.url)
        where = f"{request.method} {request.url.copy_with(query=None)}"
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._slots:
                    response = client.send(request, follow_redirects=follow_redirects)
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.HTTPError as exc:
                hint = tls_hint(exc)
                if hint is not None or attempt == attempts or isinstance(exc, _PERMANENT):
                    tried = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise RegistryError(
                        f"cannot reach {request.url.netloc.decode('ascii')} ({where}): "
                        f"{hint or f'{type(exc).__name__}: {exc}'}{tried}"
                    ) from exc
                delay = self.retry.delay(attempt, self._rand())
                log.info("%s failed (%s), retrying in %.1fs", where, type(exc).__name__, delay)
                self._sleep(delay)
                continue
            log.debug("%s -> %s", where, response.status_code)
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                after = parse_retry_after(response.headers.get("retry-after"))
                delay = self.retry.delay(attempt, self._rand(), after)
                log.info("%s -> %s, retrying in %.1fs", where, response.status_code, delay)
                self._sleep(delay)
                continue
            return response
        raise AssertionError("unreachable: the loop returns or raises")

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
    ) -> httpx.Response:
        """An authenticated registry request whose status must be in `expect`.

        Args:
            method: HTTP method.
            registry: the registry as named in references (its credentials' key).
            url: the full URL.
            scope: the token scope the request needs (``repository:acme/x:pull``).
            subject: what is being done, for error messages (``GET manifest ref``).
            expect: the statuses the caller handles.
            headers: extra request headers.
            content: the request body.
            follow_redirects: follow redirects (blob downloads).

        Raises:
            AuthError: 401/403 after answering the registry's challenge once.
            RegistryError: any other status outside `expect`, or the registry is unreachable.
        """

        def build(authorization: str | None) -> httpx.Request:
            merged = dict(headers or {})
            if authorization:
                merged["Authorization"] = authorization
            return httpx.Request(method, url, headers=merged, content=content)

        sent = self.auth.header(registry, scope)
        response = self.send(build(sent), follow_redirects)
        if response.status_code == 401:
            answer = self.auth.answer(registry, scope, response, sent)
            if answer != sent:
                response = self.send(build(answer), follow_redirects)
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
            f"{response.reason_phrase}: {server_message(response)}{tried}"
        )
