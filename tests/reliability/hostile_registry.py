"""A hostile registry for the reliability tests: loopback only, threaded, bounded.

`HostileRegistry` sits in front of a real loopback registry (it is a
`FaultProxy`, so docker can push and pull through it) and adds what a
malicious or compromised registry does:

- ``require``: HTTP basic auth with one Authorization value (the canary), checked
  here; everything else is forwarded;
- ``link_to``: a ``Link: <other origin>; rel="next"`` on every ``tags/list`` and
  ``_catalog`` reply (to lure credentials to another origin);
- ``script``: a hostile answer for matching requests: an endless or huge body, a
  trickle, deeply nested JSON, an endless chain of pagination links, a forged
  ``Docker-Content-Digest``, an error message carrying workflow commands and
  terminal escapes.

`Recorder` is the "other origin": it records every request (and whether it carried
an ``Authorization``) and answers with tags of its own. Each hostile answer is bounded
(`SEND_LIMIT` bytes, `TRICKLE_LIMIT` seconds) and handlers are capped at `MAX_HANDLERS`,
so a test can never hang on the server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.reliability.fault_proxy import FaultProxy

SEND_LIMIT = 256 * 1024 * 1024  # bytes one hostile answer writes at most
TRICKLE_LIMIT = 60.0  # seconds one trickle lasts at most
MAX_HANDLERS = 64
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

Answer = Callable[[BaseHTTPRequestHandler, "Sent"], None]


@dataclass
class Sent:
    """What one hostile answer wrote before the client stopped reading (or it ended)."""

    path: str
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


def _write(handler: BaseHTTPRequestHandler, sent: Sent, data: bytes) -> bool:
    try:
        handler.wfile.write(data)
        handler.wfile.flush()
    except OSError:
        return False
    sent.bytes += len(data)
    return True


def endless(chunk: bytes = b"[" * 65536, content_type: str = OCI_MANIFEST) -> Answer:
    """A chunked 200 that never ends (up to SEND_LIMIT): the client must stop reading."""

    def answer(handler: BaseHTTPRequestHandler, sent: Sent) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        while sent.bytes < SEND_LIMIT and _write(handler, sent, frame):
            pass
        handler.close_connection = True

    return answer


def trickle(every: float = 0.5) -> Answer:
    """Headers sent one byte every `every` seconds: no read ever times out."""

    def answer(handler: BaseHTTPRequestHandler, sent: Sent) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode() + b"\r\nX-Pad: "
        for byte in head:
            if not _write(handler, sent, bytes([byte])):
                return
        deadline = time.monotonic() + TRICKLE_LIMIT
        stop = threading.Event()
        while time.monotonic() < deadline and _write(handler, sent, b"a"):
            stop.wait(every)  # the trickle itself (the fault), not a synchronisation
        handler.close_connection = True

    return answer


def body(status: int, payload: bytes, headers: dict[str, str] | None = None) -> Answer:
    """A fixed answer."""

    def answer(handler: BaseHTTPRequestHandler, sent: Sent) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            _write(handler, sent, payload)

    return answer


def link_chain(repository: str) -> Answer:
    """Every tags page links to a new one: an endless listing."""
    counter = iter(range(10**9))

    def answer(handler: BaseHTTPRequestHandler, sent: Sent) -> None:
        n = next(counter)
        payload = json.dumps({"name": repository, "tags": [f"chain-{n}"]}).encode()
        link = f'</v2/{repository}/tags/list?last=chain-{n}>; rel="next"'
        body(200, payload, {"Content-Type": "application/json", "Link": link})(handler, sent)

    return answer


@dataclass
class Script:
    method: str | None
    path: re.Pattern[str]
    answer: Answer


class HostileRegistry(FaultProxy):
    """A FaultProxy in front of `upstream` that can turn hostile (see the module docstring)."""

    def __init__(self, upstream: str) -> None:
        self.require: str | None = None
        self.link_to: str | None = None
        self.scripts: list[Script] = []
        self.sent: list[Sent] = []
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        super().__init__(upstream)

    def script(self, method: str | None, path: str, answer: Answer) -> None:
        self.scripts.append(Script(method, re.compile(path), answer))

    def wait_sent(self, path: str, count: int = 1, timeout: float = 60.0) -> None:
        """Block until `count` hostile answers to paths matching `path` have begun."""
        pattern = re.compile(path)
        with self._mutex:
            if not self._mutex.wait_for(
                lambda: sum(1 for s in self.sent if pattern.search(s.path)) >= count, timeout
            ):
                raise TimeoutError(f"fewer than {count} hostile answers to {path}")

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._slots.acquire(timeout=10):
            handler.send_error(503)
            return
        try:
            self._serve_hostile(handler)
        finally:
            self._slots.release()

    def _serve_hostile(self, handler: BaseHTTPRequestHandler) -> None:
        if self.require and handler.headers.get("Authorization") != self.require:
            body(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}',
                {
                    "WWW-Authenticate": 'Basic realm="hostile"',
                    "Content-Type": "application/json",
                },
            )(handler, Sent(handler.path))
            return
        for script in self.scripts:
            if script.method in (None, handler.command) and script.path.search(handler.path):
                sent = Sent(handler.path)
                with self._mutex:
                    self.sent.append(sent)
                    self._mutex.notify_all()
                try:
                    script.answer(handler, sent)
                finally:
                    sent.ended = time.monotonic()
                return
        super()._serve(handler)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        status, reason, headers, payload = super()._forward(handler, body)
        path = handler.path.split("?")[0]
        if self.link_to and (path.endswith("/tags/list") or path.endswith("/_catalog")):
            headers.append(("Link", f'<{self.link_to}{path}?last=zzz>; rel="next"'))
        return status, reason, headers, payload


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


class Recorder:
    """The "other origin" on loopback: records each request, answers with tags of its own."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                with recorder._lock:
                    recorder.seen.append(
                        Seen(self.command, self.path, self.headers.get("Authorization"))
                    )
                payload = json.dumps(
                    {"name": "x", "tags": ["9.9.9"], "repositories": ["evil/injected"]}
                ).encode()
                body(200, payload, {"Content-Type": "application/json"})(self, Sent(self.path))

            do_GET = do_HEAD = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
