"""Reference-like values are normalised (host lowercased) or refused (padding) at validate time."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.builders.base import is_loopback_registry
from imagectl.domain.reference import InvalidReferenceError, parse_reference
from imagectl.errors import ManifestError
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.refs import lower_host, normalise_reference, normalise_registry
from imagectl.manifest.writer import rewrite_digests
from imagectl.registry.hosts import is_loopback

PINNED = "sha256:" + "a" * 64
NEWER = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("LOCALHOST:5000/acme/base:1", "localhost:5000/acme/base:1"),
        ("Registry.Example/team/debian:12", "registry.example/team/debian:12"),
        ("LocalHost/x:1", "localhost/x:1"),
        ("debian:12", "debian:12"),  # no host: untouched
        ("ACME/debian:12", "ACME/debian:12"),  # not a host once lowercased: left to the grammar
        ("r.example/Team/x:1", "r.example/Team/x:1"),  # the path keeps its case
    ],
)
def test_only_the_host_is_lowercased(given: str, expected: str) -> None:
    assert lower_host(given) == expected


def test_registry_without_a_path_is_lowercased() -> None:
    assert normalise_registry("LOCALHOST:5000") == "localhost:5000"
    assert normalise_registry("LOCALHOST:5000/Acme") == "localhost:5000/Acme"


@pytest.mark.parametrize("padded", [" debian:12", "debian:12 ", "\tdebian:12", "debian:12\n"])
def test_padding_is_refused(padded: str) -> None:
    with pytest.raises(InvalidReferenceError, match="has spaces around it"):
        normalise_reference(padded)
    with pytest.raises(InvalidReferenceError, match="has spaces around it"):
        normalise_registry(padded)


def write(tmp: Path, text: str) -> Path:
    (tmp / "base").mkdir(exist_ok=True)
    (tmp / "base" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp / "imagectl.yaml").write_text(text)
    return tmp / "imagectl.yaml"


def test_uppercase_localhost_is_normalised_and_stays_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    root = write(
        tmp_path,
        "version: 1\n"
        "registry: LOCALHOST:5000/acme\n"
        "bases: {debian: {ref: LOCALHOST:5000/upstream/debian:12}}\n"
        "families:\n"
        "  f:\n"
        "    from: debian\n"
        "    images:\n"
        "      base: {context: base, version: '1.4'}\n"
        "      tools: {context: base, version: '1.4', from: 'Registry.Example:5000/x:1'}\n",
    )
    manifest = load_manifest(root)
    base = manifest.images["base"]
    assert base.repository == "localhost:5000/acme/base"
    assert manifest.bases["debian"].ref == "localhost:5000/upstream/debian:12"
    assert manifest.images["tools"].base == "registry.example:5000/x:1"
    assert "registry.example:5000/x:1" in manifest.bases
    assert is_loopback_registry(base.repository)
    assert is_loopback(parse_reference(manifest.bases["debian"].ref).registry)


@pytest.mark.parametrize(
    ("line", "where", "key_path"),
    [
        ("registry: ' localhost:5000/acme'", "2:11", "registry"),
        ("bases: {debian: {ref: 'localhost:5000/debian:12 '}}", "3:23", "bases.debian.ref"),
    ],
)
def test_padded_values_are_refused_with_their_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, where: str, key_path: str
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    lines = [
        "version: 1",
        "registry: localhost:5000/acme",
        "bases: {debian: {ref: 'localhost:5000/debian:12'}}",
        "families: {f: {from: debian, images: {a: {context: base, version: '1.4'},",
        "  b: {context: base, version: '1.4', from: ' localhost:5000/x:1'}}}}",
    ]
    index = 1 if key_path == "registry" else 2
    lines[index] = line
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, "\n".join(lines) + "\n"))
    shown = [str(p) for p in info.value.problems]
    assert len(shown) == 2, shown  # the line changed, and image b's `from:` (once each)
    assert any(s.startswith(f"imagectl.yaml:{where}: {key_path}: ") for s in shown), shown
    assert any(
        s.startswith("imagectl.yaml:5:44: families.f.images.b.from: image reference ' localhost")
        and s.endswith("has spaces around it (remove them)")
        for s in shown
    ), shown


def test_bases_update_rewrites_a_pin_written_with_an_uppercase_host() -> None:
    text = f"bases:\n  debian:\n    ref: LOCALHOST:5000/debian:12@{PINNED}  # pinned\n"
    new, changes = rewrite_digests(text, {f"localhost:5000/debian:12@{PINNED}": NEWER})
    assert len(changes) == 1
    assert new == text.replace(PINNED, NEWER)  # only the digest changed: the host as written
