"""Registry credentials from the docker client configuration.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``) is read the
way the docker CLI reads it: ``credHelpers[host]`` first, then ``credsStore``,
then the ``auths`` entries (base64 ``auth``, ``username``/``password`` or
``identitytoken``). Helpers are the ``docker-credential-<name> get`` executables.
Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imagectl import proc
from imagectl.domain.reference import DOCKER_HUB
from imagectl.errors import AuthError

_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HUB_SERVER_URL = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 60.0
_NOT_FOUND = "credentials not found"


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and password, or an identity (refresh) token, for one registry.

    The repr shows the username only.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        kind = "identity_token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=***)"

    __str__ = __repr__

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values, for redaction."""
        return tuple(s for s in (self.password, self.identity_token) if s)


class CredentialSource(Protocol):
    """Anything that can say which credentials to use for a registry host."""

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials for `registry` (``host[:port]``), or None to go anonymous."""
        ...


def normalize_host(key: str) -> str:
    """A docker config key (``https://index.docker.io/v1/``, ``host:5000``) as a registry host."""
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host


class StaticCredentials:
    """Credentials given in code: a mapping of registry host to Credentials."""

    def __init__(self, mapping: Mapping[str, Credentials]) -> None:
        self._by_host = {normalize_host(k): v for k, v in mapping.items()}

    def __repr__(self) -> str:
        return f"StaticCredentials(hosts={sorted(self._by_host)!r})"

    def credentials_for(self, registry: str) -> Credentials | None:
        """The credentials given for `registry`, or None."""
        return self._by_host.get(normalize_host(registry))


def _decode_entry(path: Path, key: str, entry: Mapping[str, Any]) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(username="", identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user, sep, password = "", "", ""
        if not sep:
            raise AuthError(f"{path}: auths[{key!r}].auth is not base64 of 'user:password'")
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None  # an empty entry: the secret lives in credsStore


class DockerConfig:
    """The docker client configuration: ``auths``, ``credsStore`` and ``credHelpers``."""

    def __init__(
        self,
        path: Path | None = None,
        data: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path if path is not None else Path("config.json")
        raw = dict(data or {})
        self._env = env
        self._auths: dict[str, Credentials] = {}
        for key, entry in dict(raw.get("auths") or {}).items():
            creds = _decode_entry(self.path, key, entry if isinstance(entry, dict) else {})
            if creds is not None:
                self._auths[normalize_host(key)] = creds
        self.creds_store: str = str(raw.get("credsStore") or "")
        self.cred_helpers = {
            normalize_host(k): str(v) for k, v in dict(raw.get("credHelpers") or {}).items()
        }
        self._cache: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"DockerConfig(path={str(self.path)!r}, auths={sorted(self._auths)!r}, "
            f"creds_store={self.creds_store!r}, cred_helpers={self.cred_helpers!r})"
        )

    @classmethod
    def load(cls, path: Path | None = None, env: Mapping[str, str] | None = None) -> DockerConfig:
        """Read the docker config; a missing file is an empty config.

        Args:
            path: the config file (default ``$DOCKER_CONFIG/config.json`` or
                ``~/.docker/config.json``).
            env: the environment to read ``DOCKER_CONFIG`` and ``PATH`` from (default: ours).

        Raises:
            AuthError: the file exists but is not valid JSON or has a malformed entry.
        """
        environ = env if env is not None else os.environ
        if path is None:
            base = environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
            path = Path(base) / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, {}, env)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AuthError(f"{path}: cannot read the docker config: {exc}") from exc
        if not isinstance(data, dict):
            raise AuthError(f"{path}: the docker config must be a JSON object")
        return cls(path, data, env)

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials for `registry`: credHelpers, then credsStore, then auths; cached.

        Raises:
            AuthError: a configured credential helper is missing or failed.
        """
        host = normalize_host(registry)
        with self._lock:
            if host not in self._cache:
                self._cache[host] = self._lookup(host)
            return self._cache[host]

    def _lookup(self, host: str) -> Credentials | None:
        helper = self.cred_helpers.get(host) or self.creds_store
        if helper:
            found = self._from_helper(helper, host)
            if found is not None:
                return found
        return self._auths.get(host)

    def _from_helper(self, helper: str, host: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        server = _HUB_SERVER_URL if host == DOCKER_HUB else host
        try:
            result = proc.run(
                [program, "get"], input=server.encode(), env=self._env, timeout=_HELPER_TIMEOUT
            )
        except proc.ExecutableNotFound as exc:
            raise AuthError(
                f"credential helper {program} (configured in {self.path}) is not installed"
            ) from exc
        except proc.CommandTimeout as exc:
            raise AuthError(f"credential helper {program} hung for {host}") from exc
        if not result.ok:
            if _NOT_FOUND in result.output.lower():
                return None
            reason = result.stderr.strip().splitlines()[:1] or [f"exit status {result.returncode}"]
            raise AuthError(f"credential helper {program} failed for {host}: {reason[0][:200]}")
        try:
            reply = json.loads(result.stdout)
            username, secret = str(reply["Username"]), str(reply["Secret"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError(
                f"credential helper {program} returned no Username/Secret JSON for {host}"
            ) from exc
        if username == "<token>":
            return Credentials(username="", identity_token=secret)
        return Credentials(username, secret)


class DefaultCredentials:
    """This environment's docker config, read on first use (anonymous pulls never read it)."""

    def __init__(self, path: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self._path = path
        self._env = env
        self._config: DockerConfig | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DefaultCredentials(path={self._path!r})"

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials for `registry` from the docker config (loaded now if not yet)."""
        with self._lock:
            if self._config is None:
                self._config = DockerConfig.load(self._path, self._env)
            config = self._config
        return config.credentials_for(registry)
