"""The documents each image's last publish kept for its next rebase (rebase/sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagectl.rebase.sources import Doc, PublishedDocs
from imagectl.registry.manifests import compute_digest

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
CONFIG = b'{"architecture":"amd64","os":"linux"}'
OCI = "application/vnd.oci.image.manifest.v1+json"


def docs() -> dict[str, Doc]:
    return {compute_digest(MANIFEST): Doc(OCI, MANIFEST), compute_digest(CONFIG): Doc("", CONFIG)}


def test_what_a_publish_keeps_is_read_back_by_digest(tmp_path: Path) -> None:
    store = PublishedDocs.of(tmp_path)
    assert store.load("app") == {}
    store.save("app", docs())
    assert store.load("app") == docs()
    assert (tmp_path / ".imagectl" / "cache" / "images" / "app.json").is_file()
    store.save("app", {compute_digest(CONFIG): Doc("", CONFIG)})  # replaced, not merged
    assert store.load("app") == {compute_digest(CONFIG): Doc("", CONFIG)}
    assert PublishedDocs.of(tmp_path).load("other") == {}


def test_a_document_whose_bytes_do_not_hash_to_its_digest_is_dropped(tmp_path: Path) -> None:
    store = PublishedDocs.of(tmp_path)
    store.save("app", docs())
    path = tmp_path / ".imagectl" / "cache" / "images" / "app.json"
    stored = json.loads(path.read_text())
    stored["docs"][compute_digest(CONFIG)]["text"] = '{"architecture":"arm64","os":"linux"}'
    path.write_text(json.dumps(stored))
    assert store.load("app") == {compute_digest(MANIFEST): Doc(OCI, MANIFEST)}


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", '{"format": 99, "docs": {}}', '{"format": 1, "docs": {"x": 3}}']
)
def test_a_damaged_or_foreign_file_is_a_miss(tmp_path: Path, text: str) -> None:
    store = PublishedDocs.of(tmp_path)
    store.save("app", docs())
    (tmp_path / ".imagectl" / "cache" / "images" / "app.json").write_text(text)
    assert store.load("app") == {}


def test_a_name_that_is_no_plain_file_name_is_hashed(tmp_path: Path) -> None:
    store = PublishedDocs.of(tmp_path)
    store.save("../escape", docs())
    assert store.load("../escape") == docs()
    written = list((tmp_path / ".imagectl" / "cache" / "images").iterdir())
    assert len(written) == 1 and len(written[0].stem) == 64


def test_no_cache_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    store = PublishedDocs.of(tmp_path)
    store.save("app", docs())
    assert store.load("app") == {}
    assert not (tmp_path / ".imagectl" / "cache" / "images").exists()


def test_a_failing_write_never_fails_the_run(tmp_path: Path) -> None:
    store = PublishedDocs.of(tmp_path)
    (tmp_path / ".imagectl" / "cache").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".imagectl" / "cache" / "images").write_text("a file, not a directory")
    store.save("app", docs())
    assert store.load("app") == {}


def test_a_kept_file_is_replaced_whole_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PublishedDocs.of(tmp_path)
    synced: list[int] = []
    monkeypatch.setattr("os.fsync", lambda fd: synced.append(fd))
    store.save("app", docs())
    store.save("app", {compute_digest(CONFIG): Doc("", CONFIG)})
    assert synced == []  # a cache: a torn file after a crash is a digest-check miss
    assert [p.name for p in (tmp_path / ".imagectl" / "cache" / "images").iterdir()] == ["app.json"]
    assert store.load("app") == {compute_digest(CONFIG): Doc("", CONFIG)}
