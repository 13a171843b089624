"""The parse cache of the lock: used only for the very bytes it was made from."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imagectl import lockcache
from imagectl.lockfile import ClaimRecord, Lock, read_lock, render_lock, write_lock
from tests.unit.test_lockfile import record, sample


@pytest.fixture
def lock_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IMAGECTL_NO_CACHE", raising=False)
    return tmp_path / "imagectl.lock"


def fresh_read(path: Path) -> Lock | None:
    return read_lock(path)


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(path: Path) -> tuple[dict[str, Any], Any]:
    """(the header, the data) of the cache of the lock at `path`, its images expanded."""
    head, _, body = lockcache.cache_file(path).read_bytes().partition(b"\n")
    return json.loads(head), lockcache.expand(json.loads(body))


def restore(
    path: Path, header: dict[str, Any], data: Any, *, rehash: bool, compact: bool = True
) -> None:
    body = json.dumps(lockcache.compact(data) if compact else data).encode()
    if rehash:  # as imagectl would have written it
        header = {**header, "data": hashlib.sha256(body).hexdigest()}
    lockcache.cache_file(path).write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_a_read_stores_the_validated_lock_and_the_next_read_uses_it(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    assert fresh_read(lock_path) == sample()
    header, data = stored(lock_path)
    assert header["lock"] == digest_of(lock_path)
    assert data == sample().model_dump(mode="json")
    # the cache is what the next read believes (the lock's bytes are unchanged)
    data["images"]["base"]["tags"] = ["from-the-cache"]
    restore(lock_path, header, data, rehash=True)
    cached = fresh_read(lock_path)
    assert cached is not None and cached.images["base"].tags == ["from-the-cache"]


def test_a_lock_from_the_cache_equals_a_validated_one(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    first = fresh_read(lock_path)
    cached = fresh_read(lock_path)
    assert cached == first == sample()
    assert cached is not None and first is not None
    assert cached.model_dump() == first.model_dump()
    assert render_lock(cached) == render_lock(first)
    built = cached.images["base"].built_at
    assert built.tzinfo is not None and built.utcoffset() == timedelta(0)
    moved = cached.with_image("base", record("1.4.4", "sha256:" + "c" * 64))
    assert moved.images["base"].versions["1.4.4"] == "sha256:" + "c" * 64


def test_an_edited_cache_is_a_miss(lock_path: Path) -> None:
    """Data whose hash is not the one its header records is never believed."""
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    header, data = stored(lock_path)
    data["images"]["base"]["tags"] = ["edited"]
    restore(lock_path, header, data, rehash=False)
    assert fresh_read(lock_path) == sample()


def test_a_changed_lock_is_read_from_the_lock_not_the_cache(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    changed = sample().with_image("base", record("1.4.4", "sha256:" + "c" * 64))
    write_lock(lock_path, changed)
    assert fresh_read(lock_path) == changed
    assert stored(lock_path)[0]["lock"] == digest_of(lock_path)


@pytest.mark.parametrize(
    "damage",
    [
        "",
        "{not json",
        '{"format": 99}',
        "[]",
        '{"format": 1, "lock": "x", "data": {}}',
        '{"format": 2, "lock": "x", "data": "y"}\n{}',
    ],
)
def test_a_damaged_or_foreign_cache_is_a_miss(lock_path: Path, damage: str) -> None:
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    lockcache.cache_file(lock_path).write_text(damage)
    assert fresh_read(lock_path) == sample()


@pytest.mark.parametrize(
    "change", ["unknown field", "missing field", "short row", "no such value", "fields reordered"]
)
def test_cached_data_of_another_shape_is_a_miss(lock_path: Path, change: str) -> None:
    """Even with a matching hash, records without exactly the model's fields are not built."""
    write_lock(lock_path, sample())
    fresh_read(lock_path)
    header, data = stored(lock_path)
    if change == "unknown field":
        for image in data["images"].values():
            image["unknown"] = 1
    elif change == "missing field":
        del data["images"]["base"]["base"]["platforms"]
    data = lockcache.compact(data)
    table = data["images"]
    if change == "short row":
        table["rows"]["base"] = table["rows"]["base"][:-1]
    elif change == "no such value":
        table["rows"]["base"][0] = len(table["values"][0])
    elif change == "fields reordered":
        table["fields"].reverse()
        table["values"].reverse()
        for row in table["rows"].values():
            row.reverse()
    restore(lock_path, header, data, rehash=True, compact=False)
    assert fresh_read(lock_path) == sample()


def test_records_share_their_immutable_values_not_their_lists(lock_path: Path) -> None:
    lock = sample()
    twin = lock.images["base"].model_copy(update={"repository": "r/twin"})
    lock = lock.model_copy(update={"images": {**lock.images, "twin": twin}})
    write_lock(lock_path, lock)
    fresh_read(lock_path)
    body = lockcache.cache_file(lock_path).read_bytes().partition(b"\n")[2]
    table = json.loads(body)["images"]
    tags = table["fields"].index("tags")
    assert table["rows"]["base"][tags] == table["rows"]["twin"][tags]  # stored once
    cached = fresh_read(lock_path)
    assert cached == lock
    base, other = cached.images["base"], cached.images["twin"]
    assert base.tags == other.tags and base.tags is not other.tags
    assert base.versions is not other.versions
    assert base.base is other.base  # frozen: shared


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


def test_a_lock_with_claims_from_the_cache_is_validated_and_equal(lock_path: Path) -> None:
    claim = ClaimRecord(
        version="2.0.0",
        inputs="sha256:x",
        host="h",
        pid=1,
        claimed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    lock = sample().model_copy(update={"claims": {"base": claim}})
    write_lock(lock_path, lock)
    assert fresh_read(lock_path) == lock
    assert fresh_read(lock_path) == lock  # from the cache
