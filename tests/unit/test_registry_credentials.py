"""Credentials from the docker config: auths, credsStore, credHelpers (real helper scripts)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from imagectl.errors import AuthError
from imagectl.registry import Credentials, DefaultCredentials, DockerConfig

SECRET = "helper-secret-canary"


def write_config(directory: Path, data: Mapping[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(data))
    return path


def fake_helper(bin_dir: Path, name: str, body: str) -> Path:
    """A docker-credential-<name> executable; it logs its argv and stdin next to itself."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{bin_dir}/{name}.calls"\n'
        f'cat >> "{bin_dir}/{name}.stdin"; echo >> "{bin_dir}/{name}.stdin"\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_auths_in_every_spelling(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"bob:pa:ss").decode()
    path = write_config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": encoded},
                "registry.test:5000": {"username": "carol", "password": "pw"},
                "https://ghcr.io": {"identitytoken": "refresh"},
                "empty.test": {},
            }
        },
    )
    config = DockerConfig.load(path)
    assert config.credentials_for("docker.io") == Credentials("bob", "pa:ss")
    assert config.credentials_for("registry-1.docker.io") == Credentials("bob", "pa:ss")
    assert config.credentials_for("registry.test:5000") == Credentials("carol", "pw")
    assert config.credentials_for("ghcr.io") == Credentials(identity_token="refresh")
    assert config.credentials_for("empty.test") is None
    assert config.credentials_for("unknown.test") is None


def test_docker_config_env_and_missing_file(tmp_path: Path) -> None:
    write_config(tmp_path / "conf", {"auths": {"r.test": {"username": "u", "password": "p"}}})
    env = {"DOCKER_CONFIG": str(tmp_path / "conf")}
    assert DockerConfig.load(env=env).credentials_for("r.test") == Credentials("u", "p")
    assert DefaultCredentials(env=env).credentials_for("r.test") == Credentials("u", "p")
    missing = {"DOCKER_CONFIG": str(tmp_path / "nowhere")}
    assert DockerConfig.load(env=missing).credentials_for("r.test") is None


def test_malformed_config_is_an_auth_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(AuthError, match=r"bad/config\.json"):
        DockerConfig.load(bad / "config.json")
    path = write_config(tmp_path / "b64", {"auths": {"r.test": {"auth": "!!!"}}})
    with pytest.raises(AuthError, match=r"auths\['r.test'\].auth is not base64"):
        DockerConfig.load(path)


def test_cred_helper_is_invoked_with_the_server_on_stdin(tmp_path: Path, path_env: Path) -> None:
    reply = json.dumps({"ServerURL": "r.test:5000", "Username": "dave", "Secret": SECRET})
    fake_helper(path_env, "test", f"echo '{reply}'")
    path = write_config(tmp_path / "c", {"credHelpers": {"r.test:5000": "test"}})
    config = DockerConfig.load(path)
    assert config.credentials_for("r.test:5000") == Credentials("dave", SECRET)
    assert config.credentials_for("r.test:5000") == Credentials("dave", SECRET)  # cached
    assert config.credentials_for("other.test") is None
    assert (path_env / "test.calls").read_text() == "get\n"
    assert (path_env / "test.stdin").read_text().strip() == "r.test:5000"


def test_creds_store_for_docker_hub_and_identity_tokens(tmp_path: Path, path_env: Path) -> None:
    reply = json.dumps({"ServerURL": "x", "Username": "<token>", "Secret": SECRET})
    fake_helper(path_env, "store", f"echo '{reply}'")
    config = DockerConfig.load(write_config(tmp_path / "c", {"credsStore": "store"}))
    assert config.credentials_for("docker.io") == Credentials(identity_token=SECRET)
    assert (path_env / "store.stdin").read_text().strip() == "https://index.docker.io/v1/"


def test_helper_not_found_falls_back_to_auths(tmp_path: Path, path_env: Path) -> None:
    fake_helper(path_env, "store", "echo 'credentials not found in native keychain'; exit 1")
    data = {"credsStore": "store", "auths": {"r.test": {"username": "u", "password": "p"}}}
    config = DockerConfig.load(write_config(tmp_path / "c", data))
    assert config.credentials_for("r.test") == Credentials("u", "p")
    assert config.credentials_for("nothing.test") is None


def test_helper_failures_are_clear(tmp_path: Path, path_env: Path) -> None:
    fake_helper(path_env, "broken", "echo 'keychain locked' >&2; exit 3")
    data = {"credHelpers": {"a.test": "broken", "b.test": "absent"}}
    config = DockerConfig.load(write_config(tmp_path / "c", data))
    with pytest.raises(AuthError, match=r"docker-credential-broken failed for a.test: keychain"):
        config.credentials_for("a.test")
    with pytest.raises(AuthError, match=r"docker-credential-absent .* is not installed"):
        config.credentials_for("b.test")


def test_credentials_never_show_their_secret() -> None:
    creds = Credentials("erin", SECRET)
    token = Credentials(identity_token=SECRET)
    for text in (repr(creds), str(creds), repr(token), f"{creds}", repr([creds])):
        assert SECRET not in text
    assert "erin" in repr(creds)
