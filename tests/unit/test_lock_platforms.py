"""The lock's optional per-platform base digests: written only when present, read back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml import YAML

from imagectl.lockfile import BaseRecord, ImageRecord, Lock, read_lock, render_lock, write_lock

PLATFORMS = {"linux/amd64": "sha256:" + "1" * 64, "linux/arm64": "sha256:" + "2" * 64}


def _lock(platforms: dict[str, str]) -> Lock:
    base = BaseRecord(ref="r.test/up:1", digest="sha256:" + "0" * 64, platforms=platforms)
    image = ImageRecord(
        repository="r.test/acme/app",
        version="1.0.0",
        digest="sha256:" + "a" * 64,
        tags=["1.0.0"],
        base=base,
        inputs="sha256:" + "b" * 64,
        built_at=datetime(2026, 12, 1, tzinfo=UTC),
        revision=None,
    )
    return Lock(bases={"up": base}).with_image("app", image)


def test_without_platforms_the_lock_is_as_before(tmp_path: Path) -> None:
    text = render_lock(_lock({}))
    assert "platforms" not in text
    path = tmp_path / "imagectl.lock"
    write_lock(path, _lock({}))
    assert read_lock(path) == _lock({})


def test_platforms_round_trip_and_ruamel_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "imagectl.lock"
    write_lock(path, _lock(PLATFORMS))
    text = path.read_text()
    assert '      "linux/arm64": "sha256:' in text
    assert read_lock(path) == _lock(PLATFORMS)
    data = YAML(typ="safe").load(text)
    assert data["images"]["app"]["base"]["platforms"] == PLATFORMS
    assert data["bases"]["up"]["platforms"] == PLATFORMS
