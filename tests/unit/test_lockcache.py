"""The parse cache of the lock: used only for the very bytes it was made from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imagectl import lockcache
from imagectl.lockfile import Lock, read_lock, write_lock
from tests.unit.test_lockfile import record, sample


@pytest.fixture
def lock_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IMAGECTL_NO_CACHE", raising=False)
    return tmp_path / "imagectl.lock"


def fresh_read(path: Path) -> Lock | None:
    return read_lock(path)


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_stores_the_parsed_lock_and_the_next_read_uses_it(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    assert fresh_read(lock_path) == sample()
    cache = lockcache.cache_file(lock_path)
    stored = json.loads(cache.read_text())
    assert stored["lock"] == digest_of(lock_path)
    # the cache is what the next read believes (the lock's bytes are unchanged)
    stored["data"]["images"]["base"]["version"] = "9.9.9"
    stored["data"]["images"]["base"]["tags"] = ["from-the-cache"]
    cache.write_text(json.dumps(stored))
    cached = fresh_read(lock_path)
    assert cached is not None and cached.images["base"].tags == ["from-the-cache"]


def test_a_changed_lock_is_read_from_the_lock_not_the_cache(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    changed = sample().with_image("base", record("1.4.4", "sha256:" + "c" * 64))
    write_lock(lock_path, changed)
    assert fresh_read(lock_path) == changed
    assert json.loads(lockcache.cache_file(lock_path).read_text())["lock"] == digest_of(lock_path)


@pytest.mark.parametrize(
    "damage",
    ["", "{not json", '{"format": 99}', "[]", '{"format": 1, "lock": "x", "data": {}}'],
)
def test_a_damaged_or_foreign_cache_is_a_miss(lock_path: Path, damage: str) -> None:
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    lockcache.cache_file(lock_path).write_text(damage)
    assert fresh_read(lock_path) == sample()


def test_cached_data_that_no_longer_validates_is_a_miss(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    cache = lockcache.cache_file(lock_path)
    stored = json.loads(cache.read_text())
    stored["data"]["images"]["base"]["unknown"] = 1
    cache.write_text(json.dumps(stored))
    assert fresh_read(lock_path) == sample()


def test_a_hand_edited_lock_is_not_cached(lock_path: Path) -> None:
    lock_path.write_text(
        "format: 1\nbases: {}\nimages: {}  # emptied by hand\n",
    )
    assert fresh_read(lock_path) == Lock()
    assert not lockcache.cache_file(lock_path).exists()


def test_no_cache_when_turned_off(lock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    write_lock(lock_path, sample())
    assert fresh_read(lock_path) == sample()
    assert not lockcache.cache_file(lock_path).exists()
