"""A canary password must never appear in an exception, a repr or a log line."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest

from imagectl.errors import ImagectlError
from imagectl.registry import (
    Credentials,
    DefaultCredentials,
    DockerConfig,
    RegistryClient,
    StaticCredentials,
    parse_reference,
)
from tests.fixtures.fake_registry import FakeRegistry

CANARY = "Canary-Pa55word-4f9d1c"
REF = parse_reference("registry.test/acme/app:1")


def all_text(exc: BaseException) -> str:
    """The exception, its repr and every cause and context, as one string."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    return caplog


def test_basic_auth_secret_stays_out_of_errors_reprs_and_logs(
    logs: pytest.LogCaptureFixture,
) -> None:
    fake = FakeRegistry(auth="basic", users={"alice": CANARY})
    fake.add_image("acme/app", "1", {"a": "b"})
    good = StaticCredentials({"registry.test": Credentials("alice", CANARY)})
    with RegistryClient(credentials=good, transport=fake.transport) as client:
        client.image_config(REF)
        client.list_tags(REF)
        texts = [repr(client), repr(client._session), repr(client._session.auth), repr(good)]
    wrong = StaticCredentials({"registry.test": Credentials("alice", CANARY + "-typo")})
    with RegistryClient(credentials=wrong, transport=fake.transport) as client:
        with pytest.raises(ImagectlError) as info:
            client.get_manifest(REF)
        texts.append(all_text(info.value))
    assert "refused user 'alice'" in texts[-1]
    assert "HTTP Request" in logs.text  # the logs were captured, so their check means something
    encoded = base64.b64encode(f"alice:{CANARY}".encode()).decode()
    for text in [*texts, logs.text]:
        assert CANARY not in text
        assert encoded not in text


def test_bearer_flow_secret_stays_out(logs: pytest.LogCaptureFixture) -> None:
    fake = FakeRegistry(auth="bearer", users={"alice": CANARY})
    fake.add_image("acme/app", "1")
    good = StaticCredentials({"registry.test": Credentials("alice", CANARY)})
    with RegistryClient(credentials=good, transport=fake.transport) as client:
        client.head_manifest(REF)
        client.retag(REF, "2")
        texts = [repr(client._session.auth), repr(client._session.auth.tokens)]
    bad = StaticCredentials({"registry.test": Credentials("alice", CANARY + "x")})
    with RegistryClient(credentials=bad, transport=fake.transport) as client:
        with pytest.raises(ImagectlError) as info:
            client.head_manifest(REF)
        texts.append(all_text(info.value))
    assert "token server" in texts[-1]
    for text in [*texts, logs.text]:
        assert CANARY not in text


def test_docker_config_and_helpers_never_echo_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-leaky"
    reply = json.dumps({"Username": "u", "Secret": CANARY})
    helper.write_text(f"#!/bin/sh\necho '{reply}'\necho 'failed' >&2\nexit 2\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    no_colon = base64.b64encode(CANARY.encode()).decode()
    data = {
        "auths": {"r.test": {"username": "u", "password": CANARY}},
        "credHelpers": {"h.test": "leaky"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    config = DockerConfig.load(path)
    texts = [repr(config), repr(config.credentials_for("r.test")), repr(DefaultCredentials())]
    with pytest.raises(ImagectlError) as helper_error:
        config.credentials_for("h.test")
    texts.append(all_text(helper_error.value))
    path.write_text(json.dumps({"auths": {"x.test": {"auth": no_colon}}}))
    with pytest.raises(ImagectlError) as malformed:
        DockerConfig.load(path)
    texts.append(all_text(malformed.value))
    for text in [*texts, logs.text]:
        assert CANARY not in text
        assert no_colon not in text
