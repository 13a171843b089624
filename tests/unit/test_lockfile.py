"""imagectl.lock: round trip, deterministic bytes, atomic writes, located refusals."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imagectl.errors import LockFileError
from imagectl.lockfile import (
    HEADER,
    BaseRecord,
    ImageRecord,
    Lock,
    lock_fingerprint,
    read_lock,
    render_lock,
    write_lock,
)

DEBIAN = BaseRecord(ref="docker.io/library/debian:bookworm-slim", digest="sha256:" + "d" * 64)


def record(version: str = "1.4.3", digest: str = "sha256:" + "a" * 64, **kw: object) -> ImageRecord:
    fields: dict[str, object] = {
        "repository": "localhost:5000/acme/base",
        "version": version,
        "digest": digest,
        "tags": [version, "1.4", "1"],
        "base": DEBIAN,
        "inputs": "sha256:" + "i" * 64,
        "built_at": datetime(2026, 3, 1, 4, 5, 6, tzinfo=UTC),
        "revision": "0123456789abcdef0123456789abcdef01234567",
        **kw,
    }
    return ImageRecord.model_validate(fields)


def sample() -> Lock:
    python = record(
        "3.12.7-r2",
        "sha256:" + "b" * 64,
        repository="localhost:5000/acme/python",
        tags=["3.12.7-r2", "3.12.7", "3.12"],
        base=BaseRecord(ref="localhost:5000/acme/base:1.4.3", digest="sha256:" + "a" * 64),
        revision=None,
        versions={"3.12.7-r10": "sha256:" + "9" * 64, "3.12.7-r1": "sha256:" + "1" * 64},
    )
    return (
        Lock().with_base("debian", DEBIAN).with_image("python", python).with_image("base", record())
    )


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "imagectl.lock"


def test_missing_file_reads_as_none(lock_path: Path) -> None:
    assert read_lock(lock_path) is None


def test_round_trip(lock_path: Path) -> None:
    lock = sample()
    write_lock(lock_path, lock)
    again = read_lock(lock_path)
    assert again == lock
    assert again is not None
    assert again.images["base"].built_at == datetime(2026, 3, 1, 4, 5, 6, tzinfo=UTC)


def test_layout(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    lines = lock_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER == "# imagectl.lock — written by imagectl; do not edit by hand."
    assert lines[1] == "format: 1"
    text = "\n".join(lines)
    assert text.index("  base:") < text.index("  python:")  # images sorted by name
    assert 'built_at: "2026-03-01T04:05:06Z"' in text
    assert "revision: null" in text
    assert 'tags: ["1.4.3", "1.4", "1"]' in text
    # versions in version order: r1 < r2 < r10
    r1, r2, r10 = (text.index(f'      "3.12.7-{r}":') for r in ("r1", "r2", "r10"))
    assert r1 < r2 < r10


def test_ruamel_reads_what_we_write(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    data = YAML(typ="safe", pure=True).load(lock_path.read_text(encoding="utf-8"))
    assert Lock.model_validate(data) == sample()


def test_deterministic_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    write_lock(a, sample())
    python = sample().images["python"]
    base = sample().images["base"]
    reordered = (
        Lock().with_image("base", base).with_image("python", python).with_base("debian", DEBIAN)
    )
    write_lock(b, reordered)
    assert a.read_bytes() == b.read_bytes()
    write_lock(a, read_lock(a) or Lock())
    assert a.read_bytes() == b.read_bytes()
    assert render_lock(Lock()) == f"{HEADER}\nformat: 1\nbases: {{}}\nimages: {{}}\n"


def test_awkward_names_and_values_survive(lock_path: Path) -> None:
    odd = record(version="1.4.0", tags=["1.4.0", 'say "hi"\\', "ünï"], revision="yes")
    lock = Lock().with_image("1x", odd).with_image("null", odd).with_base("on", DEBIAN)
    write_lock(lock_path, lock)
    assert read_lock(lock_path) == lock
    data = YAML(typ="safe", pure=True).load(lock_path.read_text(encoding="utf-8"))
    assert sorted(data["images"]) == ["1x", "null"]
    assert list(data["bases"]) == ["on"]


def test_hand_edited_yaml_is_read(lock_path: Path) -> None:
    lock_path.write_text(
        "format: 1   # a comment\n"
        "bases: {}\n"
        "images:\n"
        "  base:\n"
        "    repository: localhost:5000/acme/base\n"
        "    version: '1.4.3'\n"
        "    digest: sha256:aa\n"
        "    tags:\n"
        "      - 1.4.3\n"
        "      - '1.4'\n"
        "    base: {ref: 'docker.io/library/debian:12', digest: 'sha256:dd'}\n"
        "    inputs: sha256:ii\n"
        "    built_at: 2026-03-01T05:05:06+01:00\n"
        "    revision: ~\n"
    )
    lock = read_lock(lock_path)
    assert lock is not None
    image = lock.images["base"]
    assert image.tags == ["1.4.3", "1.4"]
    assert image.built_at == datetime(2026, 3, 1, 4, 5, 6, tzinfo=UTC)
    assert image.versions == {"1.4.3": "sha256:aa"}


def test_versions_always_include_the_current_one() -> None:
    assert record().versions == {"1.4.3": "sha256:" + "a" * 64}
    lock = Lock().with_image("base", record("1.4.0", "sha256:0"))
    lock = lock.with_image("base", record("1.4.1", "sha256:1"))
    lock = lock.with_image("base", record("1.4.2", "sha256:2", versions={}))
    assert lock.images["base"].version == "1.4.2"
    assert lock.images["base"].versions == {
        "1.4.0": "sha256:0",
        "1.4.1": "sha256:1",
        "1.4.2": "sha256:2",
    }


def test_built_at_is_utc() -> None:
    naive = record(built_at=datetime(2026, 1, 1, 12, 0))
    assert naive.built_at.tzinfo is UTC
    offset = record(built_at=datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert offset.built_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert offset.model_dump(mode="json")["built_at"] == "2026-01-01T10:00:00Z"


def test_records_are_frozen_and_strict() -> None:
    with pytest.raises(ValueError):
        record().version = "9.9.9"  # type: ignore[misc]
    with pytest.raises(ValueError):
        BaseRecord.model_validate({"ref": "x", "digest": "y", "extra": 1})


def temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name != "imagectl.lock")


def test_atomic_write_leaves_no_temp_files(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    write_lock(lock_path, Lock())
    assert temp_files(lock_path.parent) == []


@pytest.mark.parametrize("fail", ["replace", "fsync"])
def test_failed_write_keeps_old_lock_and_no_temp_file(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    write_lock(lock_path, sample())
    before = lock_path.read_bytes()

    def broken(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail, broken)
    with pytest.raises(LockFileError, match="No space left on device"):
        write_lock(lock_path, Lock())
    monkeypatch.undo()
    assert lock_path.read_bytes() == before
    assert temp_files(lock_path.parent) == []


def test_write_keeps_file_mode(lock_path: Path) -> None:
    write_lock(lock_path, Lock())
    assert lock_path.stat().st_mode & 0o777 == 0o644
    lock_path.chmod(0o664)
    write_lock(lock_path, sample())
    assert lock_path.stat().st_mode & 0o777 == 0o664


def test_unwritable_directory_is_a_lock_file_error(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match="cannot write the lock"):
        write_lock(tmp_path / "missing" / "imagectl.lock", Lock())


def test_newer_format_is_refused(lock_path: Path) -> None:
    lock_path.write_text(f"{HEADER}\nformat: 2\nimages: {{}}\nfuture: true\n")
    with pytest.raises(LockFileError) as info:
        read_lock(lock_path)
    assert str(info.value) == (
        f"{lock_path}:2:9: imagectl.lock format 2 is not supported by this imagectl "
        "(supports 1); upgrade imagectl"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bases: {}\nimages: {}\n", "has no `format`"),
        ("format: '1'\n", "format '1' is not supported"),
        ("format: true\n", "format True is not supported"),
        ("- format: 1\n", "must be a mapping"),
        ("", "has no `format`"),
    ],
)
def test_missing_or_odd_format_is_refused(lock_path: Path, text: str, needle: str) -> None:
    lock_path.write_text(text)
    with pytest.raises(LockFileError, match=needle):
        read_lock(lock_path)


def test_unknown_key_is_located(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    lines = lock_path.read_text().splitlines()
    at = lines.index("  python:") + 2
    lines.insert(at, '    colour: "blue"')
    lock_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LockFileError) as info:
        read_lock(lock_path)
    assert str(info.value) == f"{lock_path}:{at + 1}:5: images.python.colour: unknown key 'colour'"


def test_wrong_types_are_located(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    text = lock_path.read_text()
    text = text.replace('tags: ["1.4.3", "1.4", "1"]', 'tags: "1.4.3"')
    text = text.replace('version: "1.4.3"', "version: 1.4")
    lock_path.write_text(text)
    with pytest.raises(LockFileError) as info:
        read_lock(lock_path)
    lines = text.splitlines()
    version_line = lines.index("    version: 1.4") + 1
    tags_line = lines.index('    tags: "1.4.3"') + 1
    message = str(info.value).splitlines()
    assert message == [
        f"{lock_path}:{version_line}:14: images.base.version: expected a string, "
        'got the number 1.4 (quote it: "1.4")',
        f"{lock_path}:{tags_line}:11: images.base.tags: expected a list, "
        "got the string '1.4.3' (write [a, b] or one '- a' per line)",
    ]


def test_missing_key_is_located(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    text = lock_path.read_text()
    lines = text.splitlines()
    at = lines.index("  base:") + 1
    lock_path.write_text(text.replace('    inputs: "sha256:' + "i" * 64 + '"\n', "", 1))
    with pytest.raises(LockFileError, match=rf":{at}:3: images\.base\.inputs: missing key"):
        read_lock(lock_path)


def test_yaml_syntax_error_is_located(lock_path: Path) -> None:
    lock_path.write_text('format: 1\nimages:\n  base:\n    tags: ["1.4.3", "1.4"\n')
    with pytest.raises(LockFileError, match=rf"^{lock_path}:5:1: YAML syntax error"):
        read_lock(lock_path)


def test_duplicate_key_is_refused(lock_path: Path) -> None:
    lock_path.write_text("format: 1\nbases: {}\nbases: {}\n")
    with pytest.raises(LockFileError, match=rf"^{lock_path}:3:1: "):
        read_lock(lock_path)


def test_not_utf8_is_refused(lock_path: Path) -> None:
    lock_path.write_bytes(b"format: 1\nimages:\n  \xff: {}\n")
    with pytest.raises(LockFileError, match=rf"^{lock_path}:3: the lock is not valid UTF-8"):
        read_lock(lock_path)


def test_fingerprint(lock_path: Path) -> None:
    assert lock_fingerprint(lock_path) == "sha256:" + hashlib.sha256(b"").hexdigest()
    write_lock(lock_path, sample())
    first = lock_fingerprint(lock_path)
    assert first == "sha256:" + hashlib.sha256(lock_path.read_bytes()).hexdigest()
    write_lock(lock_path, sample())
    assert lock_fingerprint(lock_path) == first
    write_lock(lock_path, Lock())
    assert lock_fingerprint(lock_path) != first


def test_large_lock_is_fast(lock_path: Path) -> None:
    import time

    lock = Lock()
    for index in range(2000):
        lock = lock.with_image(f"img{index}", record(versions={"1.4.0": "sha256:0"}))
    start = time.perf_counter()
    write_lock(lock_path, lock)
    assert read_lock(lock_path) == lock
    assert time.perf_counter() - start < 3.0  # ruamel alone needs ~10 s for this
