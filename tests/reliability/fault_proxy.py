"""A fault-injecting HTTP proxy in front of a loopback registry, for the reliability tests.

It listens on 127.0.0.1 only and forwards only to the one registry it was given
(also on loopback). Each request is matched against the rules in order; the
first rule that matches and still has hits left decides what happens:

- ``status``: answer a status (429, 500, 502, 503 …) with distribution-style JSON
  errors and optional headers (``Retry-After``) instead of forwarding;
- ``drop``: close the connection without any response;
- ``delay``: wait a bounded time, then forward;
- ``corrupt``: forward, then flip one hex digit of the body, headers untouched
  (so ``Docker-Content-Digest`` and ``Content-Length`` still describe the original);
- ``hold``: park the request until the test releases the rule (bounded), then forward.

A rule matches a method, a path regex and, by default, only imagectl's own
requests (``User-Agent: imagectl/…``): the docker daemon pushing and pulling
through the same proxy passes unharmed unless a rule says ``agent=None``.
Every request is logged with its arrival time, so tests count retries and
measure waits from the server's side.

The ``Host`` header is forwarded unchanged, so the registry's upload ``Location``
URLs point back at the proxy.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_LIMIT = 120.0  # seconds a held request waits at most for its release
DELAY_LIMIT = 30.0  # seconds a delayed request waits at most
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)
IMAGECTL_AGENT = "imagectl/"


@dataclass
class Rule:
    """What to do with matching requests; `hits` counts the requests it took."""

    kind: str  # status | drop | delay | corrupt | hold
    method: str | None  # None: any method
    path: re.Pattern[str]
    times: int | None = 1  # None: every matching request
    agent: str | None = IMAGECTL_AGENT  # substring of the User-Agent; None: any client
    skip: int = 0  # let this many matching requests through untouched first
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hits: int = 0
    skipped: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str, agent: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        if self.agent is not None and self.agent not in agent:
            return False
        return self.path.search(path) is not None


@dataclass
class Seen:
    """One request the proxy received."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    agent: str
    fault: str | None  # the rule kind applied, None when forwarded untouched
    status: int | None = None  # what the client got (None: dropped, or not answered yet)


def flip_hex_digit(body: bytes) -> bytes:
    """`body` with one hex digit of its first ``sha256:`` digest changed, same length.

    The JSON stays valid, so only a digest check can tell the bytes are wrong.
    """
    at = body.find(b"sha256:")
    if at < 0:
        if not body:
            return body
        return body[:-1] + bytes([body[-1] ^ 0x01])
    pos = at + len(b"sha256:")
    digit = body[pos : pos + 1]
    swapped = b"1" if digit == b"0" else b"0"
    return body[:pos] + swapped + body[pos + 1 :]


class FaultProxy:
    """A threaded proxy on 127.0.0.1 forwarding to `upstream` (``127.0.0.1:PORT``)."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the fault proxy forwards to loopback only, not {upstream}")
        self.upstream = (host, int(port))
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._mutex = threading.Condition()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        for rule in self.rules:
            rule.release.set()
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ programming

    def add(
        self,
        kind: str,
        method: str | None,
        path: str,
        *,
        times: int | None = 1,
        agent: str | None = IMAGECTL_AGENT,
        status: int = 503,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        skip: int = 0,
    ) -> Rule:
        """Add a rule (see the module docstring); rules are tried in the order added."""
        if kind not in ("status", "drop", "delay", "corrupt", "hold"):
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = Rule(
            kind,
            method,
            re.compile(path),
            times=times,
            agent=agent,
            status=status,
            headers=dict(headers or {}),
            delay=min(delay, DELAY_LIMIT),
            skip=skip,
        )
        with self._mutex:
            self.rules.append(rule)
        return rule

    def fail(self, method: str | None, path: str, status: int, **kw: object) -> Rule:
        return self.add("status", method, path, status=status, **kw)  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._mutex:
            for rule in self.rules:
                rule.release.set()
            self.rules = []

    def reset_log(self) -> None:
        with self._mutex:
            self.seen = []

    # ------------------------------------------------------------------ observing

    def _matching(self, method: str | None, path: str, agent: str | None) -> list[Seen]:
        pattern = re.compile(path)
        return [
            s
            for s in self.seen
            if (method is None or s.method == method)
            and (agent is None or agent in s.agent)
            and pattern.search(s.path)
        ]

    def requests(
        self, method: str | None = None, path: str = "", agent: str | None = IMAGECTL_AGENT
    ) -> list[Seen]:
        """The requests seen so far that match (same matching as rules, no hit limit)."""
        with self._mutex:
            return self._matching(method, path, agent)

    def wait_requests(
        self,
        method: str | None,
        path: str,
        count: int,
        agent: str | None = IMAGECTL_AGENT,
        timeout: float = 120.0,
    ) -> None:
        """Block until `count` requests matching (as `requests`) have arrived."""
        with self._mutex:
            if not self._mutex.wait_for(
                lambda: len(self._matching(method, path, agent)) >= count, timeout
            ):
                raise TimeoutError(f"fewer than {count} {method} {path} within {timeout}s")

    def wait_hits(self, rule: Rule, count: int, timeout: float = 120.0) -> None:
        """Block until `rule` has taken `count` requests (a held request counts on arrival)."""
        with self._mutex:
            if not self._mutex.wait_for(lambda: rule.hits >= count, timeout):
                raise TimeoutError(f"{rule.kind} rule {rule.path.pattern}: {rule.hits} hits")

    # ------------------------------------------------------------------ serving

    def _take(self, method: str, path: str, agent: str) -> Rule | None:
        with self._mutex:
            for rule in self.rules:
                if rule.matches(method, path, agent):
                    if rule.skipped < rule.skip:
                        rule.skipped += 1
                        continue
                    rule.hits += 1
                    self._mutex.notify_all()
                    return rule
        return None

    def _arrive(self, handler: BaseHTTPRequestHandler, fault: str | None) -> Seen:
        seen = Seen(
            time.monotonic(),
            handler.command,
            handler.path,
            handler.headers.get("User-Agent", ""),
            fault,
        )
        with self._mutex:
            self.seen.append(seen)
            self._mutex.notify_all()
        return seen

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        body = _read_body(handler)
        rule = self._take(method, path, handler.headers.get("User-Agent", ""))
        seen = self._arrive(handler, rule.kind if rule else None)
        try:
            if rule is not None and rule.kind == "status":
                seen.status = rule.status
                _send_error(handler, rule)
                return
            if rule is not None and rule.kind == "drop":
                handler.close_connection = True
                _abort(handler.connection)
                return
            if rule is not None and rule.kind == "delay":
                time.sleep(rule.delay)  # the injected fault itself, bounded by DELAY_LIMIT
            if rule is not None and rule.kind == "hold":
                rule.release.wait(HOLD_LIMIT)
            status, reason, headers, payload = self._forward(handler, body)
            if rule is not None and rule.kind == "corrupt" and payload:
                payload = flip_hex_digit(payload)
            seen.status = status
            handler.send_response_only(status, reason)
            for name, value in headers:
                handler.send_header(name, value)
            handler.end_headers()
            if method != "HEAD" and payload:
                handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            handler.close_connection = True  # the client gave up (e.g. its read timed out)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            conn.putrequest(
                handler.command, handler.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in handler.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or handler.command in ("PUT", "POST", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read()
            headers = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
            ]
            if handler.command == "HEAD":
                length = response.getheader("Content-Length")
                if length is not None:
                    headers.append(("Content-Length", length))
            else:
                headers.append(("Content-Length", str(len(payload))))
            return response.status, response.reason, headers, payload
        finally:
            conn.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _send_error(handler: BaseHTTPRequestHandler, rule: Rule) -> None:
    code = {429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}.get(
        rule.status, "UNKNOWN"
    )
    message = f"fault proxy: injected HTTP {rule.status}"
    payload = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    handler.send_response_only(rule.status)
    handler.send_header("Content-Type", "application/json")
    for name, value in rule.headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _abort(sock: socket.socket) -> None:
    """Close without a response (RST, so the client cannot mistake it for a slow reply)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A running proxy in front of `upstream`, closed afterwards."""
    proxy = FaultProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
