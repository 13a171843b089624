"""The client against real registries with basic auth, bearer tokens and TLS (all loopback)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from devenv.registry import RegistryServer
from imagectl.errors import AuthError, RegistryError
from imagectl.registry import (
    Credentials,
    DockerConfig,
    RegistryClient,
    StaticCredentials,
    parse_reference,
)
from tests.fixtures.oci import push_image
from tests.fixtures.registry import AuthRegistry, TlsRegistry, TokenRegistry

pytestmark = pytest.mark.integration

LABELS = {"org.opencontainers.image.version": "2.0.1"}


def all_operations(client: RegistryClient, host: str, repo: str, digest: str) -> None:
    """HEAD, GET, labels, retag, tags and delete all work and agree with what was pushed."""
    target = parse_reference(f"{host}/{repo}:2.0.1")
    info = client.head_manifest(target)
    assert info is not None and info.digest == digest
    assert client.get_manifest(target).digest == digest
    assert client.image_config(target).labels == LABELS
    assert client.retag(target, "2.0") == digest
    assert client.list_tags(target) == ["2.0", "2.0.1"]
    client.delete_manifest(target.with_digest(digest))
    assert client.head_manifest(target) is None


# -- basic auth (htpasswd) ----------------------------------------------------------------------


def test_basic_auth_operations(auth_registry: AuthRegistry, repo: str) -> None:
    with auth_registry.http() as http:
        pushed = push_image(http, repo, "2.0.1", LABELS)
    creds = Credentials(auth_registry.username, auth_registry.password)
    host = auth_registry.server.host
    with RegistryClient(credentials=StaticCredentials({host: creds})) as client:
        all_operations(client, host, repo, pushed.digest)


def test_basic_auth_from_docker_config_and_credential_helper(
    auth_registry: AuthRegistry, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with auth_registry.http() as http:
        push_image(http, repo, "2.0.1", LABELS)
    host, user, password = auth_registry.server.host, auth_registry.username, auth_registry.password
    target = parse_reference(f"{host}/{repo}:2.0.1")
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": encoded}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    with RegistryClient() as client:  # the default: the docker config of the environment
        assert client.image_config(target).labels == LABELS

    helper = tmp_path / "bin" / "docker-credential-imagectltest"
    helper.parent.mkdir()
    reply = json.dumps({"ServerURL": host, "Username": user, "Secret": password})
    helper.write_text(f"#!/bin/sh\nread server\necho '{reply}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {host: "imagectltest"}}))
    with RegistryClient(credentials=DockerConfig.load()) as client:
        assert client.image_config(target).labels == LABELS


def test_wrong_password_is_refused_with_a_clear_message(auth_registry: AuthRegistry) -> None:
    host = auth_registry.server.host
    wrong = Credentials(auth_registry.username, "not-the-password")
    with (
        RegistryClient(credentials=StaticCredentials({host: wrong})) as client,
        pytest.raises(AuthError) as info,
    ):
        client.head_manifest(parse_reference(f"{host}/tests/anything:1"))
    message = str(info.value)
    assert f"registry {host} refused user '{auth_registry.username}'" in message
    assert "HEAD manifest" in message and "not-the-password" not in message
    with (
        RegistryClient(credentials=StaticCredentials({})) as client,
        pytest.raises(AuthError, match=f"no credentials.*docker login {host}"),
    ):
        client.head_manifest(parse_reference(f"{host}/tests/anything:1"))


# -- bearer tokens --------------------------------------------------------------------------------


def test_bearer_token_operations_and_scope_caching(
    token_registry: TokenRegistry, repo: str
) -> None:
    with token_registry.http(repo) as http:
        pushed = push_image(http, repo, "2.0.1", LABELS)
    host = token_registry.server.host
    creds = Credentials(token_registry.username, token_registry.password)
    tokens = token_registry.tokens
    asked_before = len(tokens.requests)
    target = parse_reference(f"{host}/{repo}:2.0.1")
    with RegistryClient(credentials=StaticCredentials({host: creds})) as client:
        assert client.head_manifest(target) is not None
        assert client.request_count == 3  # 401 challenge, token, retry
        assert client.head_manifest(target) is not None
        assert client.image_config(target).labels == LABELS
        assert client.request_count == 6  # the cached pull token served HEAD, GET and blob GET
        all_operations(client, host, repo, pushed.digest)
    scopes = [r.scopes for r in tokens.requests[asked_before:]]
    pull, push, delete = (f"repository:{repo}:{a}" for a in ("pull", "pull,push", "delete"))
    assert scopes == [(pull,), (push,), (delete,)]  # one token per scope, each asked for once
    assert {r.account for r in tokens.requests[asked_before:]} == {token_registry.username}


def test_bearer_identity_token(token_registry: TokenRegistry, repo: str) -> None:
    with token_registry.http(repo) as http:
        push_image(http, repo, "2.0.1", LABELS)
    host = token_registry.server.host
    creds = Credentials(identity_token=token_registry.identity_token)
    with RegistryClient(credentials=StaticCredentials({host: creds})) as client:
        assert client.image_config(parse_reference(f"{host}/{repo}:2.0.1")).labels == LABELS


def test_bearer_wrong_password_is_refused(token_registry: TokenRegistry) -> None:
    host = token_registry.server.host
    wrong = Credentials(token_registry.username, "nope")
    with (
        RegistryClient(credentials=StaticCredentials({host: wrong})) as client,
        pytest.raises(AuthError, match=f"token server .* refused user .* registry {host}"),
    ):
        client.head_manifest(parse_reference(f"{host}/tests/anything:1"))


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_with_the_generated_ca(tls_registry: TlsRegistry, repo: str) -> None:
    with tls_registry.http() as http:
        pushed = push_image(http, repo, "2.0.1", LABELS)
    host = tls_registry.server.host
    client = RegistryClient(
        credentials=StaticCredentials({}), tls_registries=[host], ca_file=Path(tls_registry.ca_file)
    )
    with client:
        all_operations(client, host, repo, pushed.digest)


def test_tls_trust_from_certs_dir_and_environment(
    tls_registry: TlsRegistry, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_registry.http() as http:
        push_image(http, repo, "2.0.1", LABELS)
    host = tls_registry.server.host
    target = parse_reference(f"{host}/{repo}:2.0.1")
    (tmp_path / "certs.d" / host).mkdir(parents=True)
    shutil.copy(tls_registry.ca_file, tmp_path / "certs.d" / host / "ca.crt")
    none = StaticCredentials({})
    with RegistryClient(
        credentials=none, tls_registries=[host], certs_dir=tmp_path / "certs.d"
    ) as c:
        assert c.head_manifest(target) is not None
    monkeypatch.setenv("SSL_CERT_FILE", tls_registry.ca_file)
    with RegistryClient(credentials=none, tls_registries=["127.0.0.1"]) as c:
        assert c.head_manifest(target) is not None


def test_tls_without_the_ca_is_refused_clearly(
    tls_registry: TlsRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    host = tls_registry.server.host
    client = RegistryClient(
        credentials=StaticCredentials({}), tls_registries=[host], certs_dir=tmp_path
    )
    with client, pytest.raises(RegistryError, match=f"cannot reach {host}.*not trusted"):
        client.head_manifest(parse_reference(f"{host}/tests/anything:1"))
    assert client.request_count == 1  # a certificate problem is not retried


def test_a_loopback_registry_is_tried_over_https_first_as_docker_does(
    tls_registry: TlsRegistry,
    registry: RegistryServer,
    repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No setting needed: a TLS loopback registry answers HTTPS, a plain one falls back."""
    with tls_registry.http() as http:
        push_image(http, repo, "2.0.1", LABELS)
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        push_image(http, repo, "2.0.1", LABELS)
    monkeypatch.setenv("SSL_CERT_FILE", tls_registry.ca_file)
    with RegistryClient(credentials=StaticCredentials({})) as client:
        for host in (tls_registry.server.host, registry.host):
            assert client.head_manifest(parse_reference(f"{host}/{repo}:2.0.1")) is not None
        assert client.request_count == 2  # the failed handshake of the plain one is no request
        assert client._session.base_url(tls_registry.server.host).startswith("https://")
        assert client._session.base_url(registry.host).startswith("http://")
