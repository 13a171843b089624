"""The lock journal: O(1) durable appends, replay by every reader, torn tails, compaction."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from imagectl.apply.record import LockRecorder
from imagectl.errors import LockFileError
from imagectl.lockfile import (
    JournalEntry,
    Lock,
    LockJournal,
    compact_journal,
    journal_path,
    read_lock,
    write_lock,
)
from imagectl.planfile import fingerprint
from tests.unit.test_lockfile import DEBIAN, record, sample


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "imagectl.lock"


def journal_lines(lock_path: Path) -> list[bytes]:
    """The lines of the journal, without the preallocated zeros of a journal still open."""
    return journal_path(lock_path).read_bytes().split(b"\0", 1)[0].splitlines()


def entry(name: str, version: str = "2.0.0") -> JournalEntry:
    return JournalEntry(image=name, record=record(version), bases={"debian": DEBIAN})


def journalled(lock_path: Path, *names: str) -> None:
    """A journal holding one record per name, as a run killed after recording them."""
    journal = LockJournal(lock_path)
    for name in names:
        journal.append(entry(name))
    journal.close()


def test_records_are_journalled_not_written_to_the_lock(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    before = lock_path.read_bytes()
    recorder = LockRecorder(lock_path, read_lock(lock_path))
    recorder.record("base", record("2.0.0", "sha256:" + "c" * 64), {"debian": DEBIAN})
    recorder.record("tools", record("0.1.0"), {})

    assert lock_path.read_bytes() == before  # O(1): the lock is not rewritten per image
    lines = journal_lines(lock_path)
    assert len(lines) == 3  # header + one line per recorded image
    assert journal_path(lock_path).parent.name == ".imagectl"  # ignored by git
    seen = read_lock(lock_path)  # every reader (plan, status, claims) sees the records
    assert seen is not None
    assert seen.images["base"].version == "2.0.0"
    assert seen.images["base"].versions["1.4.3"] == "sha256:" + "a" * 64  # history kept
    assert sorted(seen.images) == ["base", "python", "tools"]
    assert seen == recorder.lock


def test_finish_compacts_into_the_lock_and_removes_the_journal(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    recorder = LockRecorder(lock_path, read_lock(lock_path))
    recorder.record("tools", record("0.1.0"), {})
    expected = recorder.lock
    recorder.finish()

    assert not journal_path(lock_path).exists()
    assert read_lock(lock_path) == expected
    assert YAML(typ="safe").load(lock_path.read_text())["images"]["tools"]["version"] == "0.1.0"


def test_finish_without_records_writes_nothing(lock_path: Path) -> None:
    recorder = LockRecorder(lock_path, None)
    recorder.finish()
    assert not lock_path.exists()
    assert not journal_path(lock_path).exists()


def test_a_killed_run_loses_nothing_and_the_next_run_folds_it_in(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    killed = LockRecorder(lock_path, read_lock(lock_path))
    killed.record("tools", record("0.1.0"), {})  # then the process dies: no finish()

    second = LockRecorder(lock_path, read_lock(lock_path))
    assert "tools" in second.lock.images
    second.record("extra", record("3.0.0"), {})  # folds the old journal in, starts its own
    assert "tools" in lock_path.read_text()
    assert len(journal_lines(lock_path)) == 2
    second.finish()
    final = read_lock(lock_path)
    assert final is not None
    assert {"tools", "extra"} <= set(final.images)


def test_a_torn_last_line_is_ignored(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    journalled(lock_path, "tools")
    whole = journal_path(lock_path).read_bytes()
    torn = entry("other").model_dump_json().encode()[:40]  # an append cut by a crash
    journal_path(lock_path).write_bytes(whole + torn)

    seen = read_lock(lock_path)
    assert seen is not None
    assert "tools" in seen.images
    assert "other" not in seen.images


def test_a_bad_complete_line_is_refused_with_its_line(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    journalled(lock_path, "tools")
    with journal_path(lock_path).open("ab") as handle:
        handle.write(b'{"image": "x", "record": {"version": 1}}\n')

    with pytest.raises(LockFileError, match=r"imagectl\.lock\.journal:3: invalid journal entry"):
        read_lock(lock_path)


def test_a_journal_of_an_older_lock_is_stale(lock_path: Path) -> None:
    """The lock was rewritten (and the journal's removal lost): the journal is ignored."""
    write_lock(lock_path, sample())
    journalled(lock_path, "tools")
    kept = journal_path(lock_path).read_bytes()
    write_lock(lock_path, Lock())  # removes the journal ...
    journal_path(lock_path).write_bytes(kept)  # ... as if that removal were lost

    assert read_lock(lock_path) == Lock()


def test_a_journal_without_a_lock_is_read(lock_path: Path) -> None:
    journalled(lock_path, "tools")

    seen = read_lock(lock_path)
    assert seen is not None
    assert list(seen.images) == ["tools"]
    assert seen.bases == {"debian": DEBIAN}


def test_compact_journal(lock_path: Path) -> None:
    write_lock(lock_path, sample())
    assert compact_journal(lock_path) is False
    journalled(lock_path, "tools")

    assert compact_journal(lock_path) is True
    assert not journal_path(lock_path).exists()
    assert "tools" in lock_path.read_text()


def test_concurrent_records_are_all_kept(lock_path: Path) -> None:
    recorder = LockRecorder(lock_path, None)
    names = [f"img{i}" for i in range(40)]
    threads = [
        threading.Thread(target=recorder.record, args=(n, record("1.0.0"), {})) for n in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(journal_lines(lock_path)) == 41
    seen = read_lock(lock_path)
    assert seen is not None
    assert sorted(seen.images) == sorted(names)


def test_a_saved_plan_goes_stale_when_a_killed_apply_journalled(lock_path: Path) -> None:
    """A journal changes the lock a plan was made from, as a rewritten lock did."""
    manifest_file = lock_path.parent / "imagectl.yaml"
    manifest_file.write_text("images: {}\n")
    manifest = SimpleNamespace(
        files=[manifest_file], root_dir=lock_path.parent, lock_path=lock_path
    )
    write_lock(lock_path, sample())
    before = fingerprint(manifest)  # type: ignore[arg-type]
    journalled(lock_path, "tools")
    assert fingerprint(manifest) != before  # type: ignore[arg-type]
    compact_journal(lock_path)
    assert not journal_path(lock_path).exists()


def test_an_open_journal_is_preallocated_and_closed_to_its_lines(lock_path: Path) -> None:
    """Lines go into preallocated space (fdatasync flushes data only); a killed run leaves
    zeros after its last line, which every reader ignores; close cuts them off."""
    journal = LockJournal(lock_path)
    journal.append(entry("tools"))
    journal.append(entry("extra"))
    data = journal_path(lock_path).read_bytes()
    assert len(data) >= LockJournal.CHUNK  # preallocated
    assert data.rstrip(b"\0").endswith(b"\n")
    seen = read_lock(lock_path)  # as a reader after a kill sees it
    assert seen is not None and sorted(seen.images) == ["extra", "tools"]
    journal.close()
    assert journal_path(lock_path).read_bytes() == data.rstrip(b"\0")


def test_a_journal_grows_by_chunks(lock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LockJournal, "CHUNK", 512)  # a line is about 700 bytes
    journal = LockJournal(lock_path)
    names = [f"img{i}" for i in range(5)]
    for name in names:
        journal.append(entry(name))
    seen = read_lock(lock_path)
    assert seen is not None and sorted(seen.images) == names
    journal.close()
    assert b"\0" not in journal_path(lock_path).read_bytes()


def test_without_preallocation_lines_extend_the_file(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr("os.posix_fallocate", unsupported)
    journal = LockJournal(lock_path)
    journal.append(entry("tools"))
    journal.append(entry("extra"))
    assert b"\0" not in journal_path(lock_path).read_bytes()
    assert len(journal_lines(lock_path)) == 3
    seen = read_lock(lock_path)
    assert seen is not None and sorted(seen.images) == ["extra", "tools"]
    journal.close()


def test_a_journal_written_by_the_previous_version_is_read(lock_path: Path) -> None:
    """Journals of earlier versions (appended, fsynced, JSON with spaces, every field
    written) replay as before."""
    write_lock(lock_path, sample())
    journal_path(lock_path).parent.mkdir(exist_ok=True)
    fingerprint_of_lock = "sha256:" + hashlib.sha256(lock_path.read_bytes()).hexdigest()
    old_line = (
        '{"image": "tools", "record": {"repository": "localhost:5000/acme/tools", '
        '"version": "0.1.0", "digest": "sha256:' + "e" * 64 + '", "tags": ["0.1.0"], '
        '"base": {"ref": "docker.io/library/debian:bookworm-slim", "digest": "sha256:'
        + "d" * 64
        + '"}, "inputs": "sha256:'
        + "i" * 64
        + '", "built_at": "2026-03-01T04:05:06Z", '
        '"revision": null, "versions": {"0.1.0": "sha256:' + "e" * 64 + '"}}, '
        '"bases": {"debian": {"ref": "docker.io/library/debian:bookworm-slim", '
        '"digest": "sha256:' + "d" * 64 + '"}}}'
    )
    header = '{"journal": 1, "lock": "' + fingerprint_of_lock + '"}'
    journal_path(lock_path).write_text(header + "\n" + old_line + "\n")
    seen = read_lock(lock_path)
    assert seen is not None
    assert seen.images["tools"].digest == "sha256:" + "e" * 64
    assert seen.images["tools"].frontend is None
    assert seen.bases["debian"] == DEBIAN
