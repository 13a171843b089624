"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens, basic auth.

The flow is docker's: a request goes out with whatever this host is known to need
(nothing, a cached bearer token for the scope, or basic credentials); a 401
carries a challenge; the challenge is answered once (a token fetched from the
realm for the scope, or basic credentials) and the request is repeated. Tokens are
cached per (registry, scope) until shortly before they expire, and fetched once
even when many threads need the same scope at the same time.
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from imagectl.errors import AuthError, RegistryError
from imagectl.registry.credentials import Credentials, CredentialSource
from imagectl.registry.jsondoc import load_object
from imagectl.registry.limits import Body, RegistryLimitError
from imagectl.textsafe import clean

_TOKEN_RE = re.compile(
    r"""\s*,?\s*(?:([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))|([A-Za-z][\w-]*))"""
)
_DEFAULT_TOKEN_TTL = 60.0
_MAX_TOKEN_TTL = 86400.0
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,16384}")
_CLIENT_ID = "imagectl"


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lowercase) and parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (several challenges per value allowed)."""
    found: list[Challenge] = []
    for value in values:
        scheme, params = "", dict[str, str]()
        for match in _TOKEN_RE.finditer(value):
            name, quoted, bare, token = match.groups()
            if token is not None:
                if scheme:
                    found.append(Challenge(scheme, params))
                scheme, params = token.lower(), {}
            elif name is not None and scheme:
                params[name.lower()] = (
                    re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
                )
        if scheme:
            found.append(Challenge(scheme, params))
    return found


def basic_header(credentials: Credentials) -> str:
    """The ``Authorization`` value for HTTP basic auth."""
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenCache:
    """Bearer tokens by (registry, scope), thread-safe, with one fetch lock per key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def get(self, key: tuple[str, str]) -> str | None:
        """The token for (registry, scope) if it has not expired."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None or entry[1] <= self._clock():
                return None
            return entry[0]

    def put(self, key: tuple[str, str], token: str, ttl: float) -> None:
        """Keep `token` for `ttl` seconds."""
        with self._lock:
            self._tokens[key] = (token, self._clock() + ttl)

    def discard(self, key: tuple[str, str]) -> None:
        """Forget the token for (registry, scope)."""
        with self._lock:
            self._tokens.pop(key, None)

    def key_lock(self, key: tuple[str, str]) -> threading.Lock:
        """The lock held while fetching the token for (registry, scope)."""
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())


Send = Callable[[httpx.Request, Body], httpx.Response]


class Authenticator:
    """Answers registry challenges; knows per host whether it wants bearer or basic auth.

    Args:
        credentials: where credentials come from (looked up only when a registry asks).
        send: sends a request with retries and request counting, without authentication.
        clock: monotonic seconds, for token expiry.
    """

    def __init__(
        self,
        credentials: CredentialSource,
        send: Send,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._send = send
        self._lock = threading.Lock()
        self._bearer: dict[str, Challenge] = {}
        self._basic: set[str] = set()
        self._creds: dict[str, Credentials | None] = {}
        self.tokens = TokenCache(clock)

    def __repr__(self) -> str:
        return f"Authenticator(bearer={sorted(self._bearer)!r}, basic={sorted(self._basic)!r})"

    def credentials(self, registry: str) -> Credentials | None:
        """The credentials for `registry`, looked up once."""
        with self._lock:
            if registry in self._creds:
                return self._creds[registry]
        found = self._credentials.credentials_for(registry)
        with self._lock:
            return self._creds.setdefault(registry, found)

    def who(self, registry: str) -> str:
        """Who we are to `registry`, for messages: a username, never a secret."""
        creds = self.credentials(registry)
        if creds is None:
            return "anonymous (no credentials for this registry)"
        return f"user {creds.username!r}" if creds.username else "an identity token"

    def header(self, registry: str, scope: str) -> str | None:
        """The Authorization value to send up front, if this registry's scheme is known."""
        with self._lock:
            challenge = self._bearer.get(registry)
            basic = registry in self._basic
        if challenge is not None:
            return self._bearer_header(registry, scope, challenge, stale=None)
        if basic:
            creds = self.credentials(registry)
            return basic_header(creds) if creds is not None else None
        return None

    def answer(self, registry: str, scope: str, response: httpx.Response, used: str | None) -> str:
        """The Authorization value answering the 401 `response` to a request sent with `used`.

        Raises:
            AuthError: no usable challenge, no credentials for basic auth, or the token
                server refused us.
        """
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.realm:
                check_realm(registry, response.request.url, challenge.realm)
                # Remembered without its scope: a later request asks for its own scope only.
                general = Challenge(
                    "bearer", {k: v for k, v in challenge.params.items() if k != "scope"}
                )
                with self._lock:
                    self._bearer[registry] = general
                return self._bearer_header(registry, scope, challenge, stale=used)
        if any(c.scheme == "basic" for c in challenges):
            creds = self.credentials(registry)
            if creds is None or not creds.username:
                raise AuthError(
                    f"registry {registry} requires a login and there are no credentials for it "
                    f"(run `docker login {registry}`)"
                )
            with self._lock:
                self._basic.add(registry)
            return basic_header(creds)
        raise AuthError(f"registry {registry} answered 401 without a usable WWW-Authenticate")

    def _bearer_header(
        self, registry: str, scope: str, challenge: Challenge, stale: str | None
    ) -> str:
        key = (registry, scope)
        with self.tokens.key_lock(key):
            cached = self.tokens.get(key)
            if cached is not None and f"Bearer {cached}" != stale:
                return f"Bearer {cached}"  # fresh, or another thread renewed it meanwhile
            scopes = [s for s in (scope, challenge.scope) if s]
            token, ttl = self._fetch_token(registry, challenge, list(dict.fromkeys(scopes)))
            self.tokens.put(key, token, ttl)
            return f"Bearer {token}"

    def _fetch_token(
        self, registry: str, challenge: Challenge, scopes: list[str]
    ) -> tuple[str, float]:
        realm = httpx.URL(challenge.realm)  # checked by `check_realm`
        shown = clean(challenge.realm, 200)
        creds = self.credentials(registry)
        headers = {"Accept": "application/json"}
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": challenge.service,
                "scope": " ".join(scopes),
                "client_id": _CLIENT_ID,
            }
            request = httpx.Request("POST", realm, data=form, headers=headers)
        else:
            pairs = [("service", challenge.service)] if challenge.service else []
            params = tuple(pairs + [("scope", s) for s in scopes])
            if creds is not None and creds.username:
                headers["Authorization"] = basic_header(creds)
            request = httpx.Request("GET", realm, params=params, headers=headers)
        response = self._send(request, Body.TOKEN)
        if response.status_code in (401, 403):
            raise AuthError(
                f"token server {shown} refused {self.who(registry)} for registry "
                f"{registry} (scope {' '.join(scopes) or '-'}): HTTP {response.status_code}"
            )
        if response.status_code != 200:
            raise RegistryError(
                f"token server {shown} for registry {registry} answered "
                f"HTTP {response.status_code} {clean(response.reason_phrase, 100)}"
            )
        return parse_token(response.content, f"token server {shown} for registry {registry}")


def parse_token(raw: bytes, what: str) -> tuple[str, float]:
    """(token, seconds to keep it) from a token server's JSON reply.

    The token must be printable ASCII (it goes into a header); ``expires_in`` a
    finite number of seconds, kept between 1 s and a day.

    Raises:
        RegistryError: not a JSON object, no usable token, or a malformed expiry.
    """
    body = load_object(raw, what)
    token = body.get("token") or body.get("access_token") or ""
    if not isinstance(token, str) or not token:
        raise RegistryError(f"{what}: the reply has no token")
    if not _TOKEN_CHARS.fullmatch(token):
        raise RegistryError(f"{what}: the token holds characters a header cannot carry")
    expires = body.get("expires_in") or _DEFAULT_TOKEN_TTL
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise RegistryError(f"{what}: expires_in is not a number")
    seconds = float(min(max(expires, 1), _MAX_TOKEN_TTL))  # ints of any size compare fine
    ttl = seconds if math.isfinite(seconds) else 1.0
    return token, max(ttl - 10.0, ttl / 2)


def check_realm(registry: str, registry_url: httpx.URL, realm: str) -> None:
    """Refuse a token realm that is no http(s) URL, or plain HTTP for an HTTPS registry.

    A realm on another HTTPS host is docker's behaviour and allowed: the token server
    of a registry often lives elsewhere (Docker Hub's is auth.docker.io).

    Raises:
        RegistryError: an invalid realm, or one that would downgrade to plain HTTP.
    """
    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise RegistryError(
            f"registry {registry} names an invalid token realm {clean(realm, 200)!r}"
        )
    if registry_url.scheme == "https" and url.scheme == "http":
        raise RegistryLimitError(
            f"registry {registry} is served over HTTPS but names a plain-HTTP token realm "
            f"({clean(realm, 200)}): refusing to send credentials without TLS"
        )
