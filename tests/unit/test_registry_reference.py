"""Image reference parsing and normalisation (docker's rules)."""

from __future__ import annotations

import pytest

from imagectl.builders.base import registry_host
from imagectl.domain.reference import without_digest, written_tag
from imagectl.errors import ImagectlError
from imagectl.registry import InvalidReferenceError, Reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("debian", "docker.io/library/debian:latest"),
        ("debian:bookworm-slim", "docker.io/library/debian:bookworm-slim"),
        ("acme/app", "docker.io/acme/app:latest"),
        ("docker.io/debian", "docker.io/library/debian:latest"),
        ("index.docker.io/library/debian:12", "docker.io/library/debian:12"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/acme/base:1.4.2", "localhost:5000/acme/base:1.4.2"),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
        ("[::1]:5000/acme/app:1", "[::1]:5000/acme/app:1"),
        ("ghcr.io/org/img_x.y__z--w:1.0_rc-1", "ghcr.io/org/img_x.y__z--w:1.0_rc-1"),
        ("Registry/app:1", "Registry/app:1"),
        (f"host:443/ns/repo:tag@{DIGEST}", f"host:443/ns/repo:tag@{DIGEST}"),
        (f"debian@{DIGEST}", f"docker.io/library/debian@{DIGEST}"),
    ],
)
def test_parse_and_normalise(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


def test_parts_and_docker_hub_api_host() -> None:
    ref = parse_reference(f"debian:12@{DIGEST}")
    assert ref == Reference("docker.io", "library/debian", "12", DIGEST)
    assert ref.api_host == "registry-1.docker.io"
    assert ref.identifier == DIGEST
    assert parse_reference("localhost:5000/x:1").api_host == "localhost:5000"
    assert parse_reference("localhost:5000/x:1").identifier == "1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Debian", "lowercase"),
        ("localhost:5000/Acme/app", "lowercase"),
        ("acme/app:", "not a valid tag"),
        ("acme/app:-x", "not a valid tag"),
        ("acme/app@sha256:1234", "digest"),
        ("acme//app", "repository path"),
        ("https://ghcr.io/acme/app", "scheme"),
        ("acme/app_-x", "repository path"),
        ("-bad.host:5000/app", "registry host"),
        ("a" * 256, "longer than"),
    ],
)
def test_invalid_references_are_explained(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError, match=why) as info:
        parse_reference(text)
    assert isinstance(info.value, ImagectlError)
    assert repr(text) in str(info.value)  # the message quotes what the user wrote


def test_by_tag_with_digest_with_tag() -> None:
    ref = parse_reference("localhost:5000/acme/base:1.4")
    pinned = ref.with_digest(DIGEST)
    assert str(pinned) == f"localhost:5000/acme/base:1.4@{DIGEST}"
    assert pinned.by_tag == ref
    moved = pinned.with_tag("1")
    assert str(moved) == "localhost:5000/acme/base:1"
    assert moved.digest is None
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("no spaces")
    with pytest.raises(InvalidReferenceError):
        ref.with_digest("md5:abc")
    with pytest.raises(InvalidReferenceError, match=r"no tag"):
        _ = parse_reference(f"acme/app@{DIGEST}").by_tag


def test_references_are_hashable_values() -> None:
    a = parse_reference("debian")
    b = parse_reference("docker.io/library/debian:latest")
    assert a == b
    assert len({a, b}) == 1
    with pytest.raises(InvalidReferenceError):
        Reference("docker.io", "library/debian")


D = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("debian", ""),  # no `latest` assumed: the tag as written
        ("debian:12", "12"),
        ("localhost:5000/acme/app", ""),  # a port is not a tag
        ("localhost:5000/acme/app:1.4.0", "1.4.0"),
        (f"localhost:5000/acme/app:1.4.0@{D}", "1.4.0"),
        (f"acme/app@{D}", ""),
        ("localhost:5000/acme/app:?", ""),  # not a reference (a parent not built yet)
    ],
)
def test_written_tag(text: str, tag: str) -> None:
    assert written_tag(text) == tag


def test_without_digest_keeps_the_reference_as_written() -> None:
    assert without_digest(f"debian:12@{D}") == "debian:12"
    assert without_digest("debian:12") == "debian:12"


def test_parsing_is_memoized_and_errors_are_raised_every_time() -> None:
    assert parse_reference("localhost:5000/acme/app") is parse_reference("localhost:5000/acme/app")
    for _ in range(2):
        with pytest.raises(InvalidReferenceError, match="must be lowercase"):
            parse_reference("localhost:5000/Acme/app")


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000"),
        ("debian:bookworm", "docker.io"),
        ("index.docker.io/library/debian:12", "docker.io"),
        ("[::1]:5000/a:1", "[::1]:5000"),
        ("not a reference", ""),
    ],
)
def test_builders_take_the_registry_host_from_the_one_parser(text: str, host: str) -> None:
    assert registry_host(text) == host
