"""A minimal bearer-token server for the reference registry (tests only, loopback only).

It implements the docker token protocol just far enough for `docker-registry`'s
``auth: token:`` access controller: ``GET /token?service=…&scope=…`` with HTTP
basic credentials (or none: anonymous) and ``POST /token`` with an OAuth2
``refresh_token`` grant (docker's identity tokens). Tokens are RS256 JWTs whose
``x5c`` header carries a self-signed certificate that the registry trusts through
``rootcertbundle``; the key pair is made with the openssl CLI and signing calls
``openssl dgst -sha256 -sign``. Every token request is recorded for the tests.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SERVICE = "imagectl-test-registry"
ISSUER = "imagectl-test-token-server"
_ACTIONS = ("pull", "push", "delete", "*")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_signing_key(workdir: Path) -> tuple[Path, Path]:
    """A 2048-bit RSA key and a self-signed certificate for it: (key.pem, cert.pem)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key, cert = workdir / "token-key.pem", workdir / "token-cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "7"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=imagectl test token signer"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered: who asked, for which scopes, with what result."""

    account: str  # "" for anonymous
    scopes: tuple[str, ...]
    status: int


@dataclass
class TokenServer:
    """A running token server; `requests` lists what it was asked, in order."""

    realm: str
    service: str
    issuer: str
    cert_path: Path
    key_path: Path
    users: Mapping[str, str]
    refresh_tokens: Mapping[str, str]
    anonymous_pull: bool
    ttl: int
    requests: list[TokenRequest] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def sign(self, account: str, scopes: list[str]) -> str:
        """A JWT granting `account` the requested actions (anonymous: pull at most)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a in _ACTIONS]
            if not account:
                wanted = [a for a in wanted if a == "pull" and self.anonymous_pull]
            access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        cert_b64 = "".join(
            line for line in self.cert_path.read_text().splitlines() if "-----" not in line
        )
        header = {"typ": "JWT", "alg": "RS256", "x5c": [cert_b64]}
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        payload = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
            input=payload.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{payload}.{_b64url(signature)}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the tests inspect `server.requests` instead

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _grant(self, account: str | None, scopes: list[str]) -> None:
            if account is None:
                server.record(TokenRequest("?", tuple(scopes), 401))
                denied = {"code": "UNAUTHORIZED", "message": "invalid username or password"}
                self._reply(401, {"errors": [denied]})
                return
            server.record(TokenRequest(account, tuple(scopes), 200))
            token = server.sign(account, scopes)
            issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._reply(
                200,
                {
                    "token": token,
                    "access_token": token,
                    "expires_in": server.ttl,
                    "issued_at": issued,
                },
            )

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            account: str | None = ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                account = user if server.users.get(user) == password else None
            self._grant(account, query.get("scope", []))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            refresh = form.get("refresh_token", [""])[0]
            account = server.refresh_tokens.get(refresh)
            scopes = " ".join(form.get("scope", [])).split()
            self._grant(account if form.get("grant_type") == ["refresh_token"] else None, scopes)

    return Handler


def start_token_server(
    workdir: Path,
    users: Mapping[str, str],
    *,
    refresh_tokens: Mapping[str, str] | None = None,
    anonymous_pull: bool = False,
    ttl: int = 300,
) -> TokenServer:
    """Start a token server on a free 127.0.0.1 port, in a daemon thread.

    Args:
        workdir: where the signing key and certificate are written.
        users: username -> password accepted with HTTP basic auth.
        refresh_tokens: identity token -> username accepted by the refresh_token grant.
        anonymous_pull: grant ``pull`` to requests without credentials.
        ttl: token lifetime in seconds (``expires_in``).
    """
    key, cert = make_signing_key(workdir)
    server = TokenServer(
        realm="",
        service=SERVICE,
        issuer=ISSUER,
        cert_path=cert,
        key_path=key,
        users=dict(users),
        refresh_tokens=dict(refresh_tokens or {}),
        anonymous_pull=anonymous_pull,
        ttl=ttl,
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server._httpd = httpd
    server.realm = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    threading.Thread(target=httpd.serve_forever, name="token-server", daemon=True).start()
    return server
