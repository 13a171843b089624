"""The record owner's pure parts and its view of git: which records are not committed."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagectl.apply.run_record import pending_lines, run_revision_of, uncommitted_revisions
from imagectl.lockfile import BaseRecord, ImageRecord, Lock


def commit(root: Path, message: str) -> str:
    run = ["git", "-C", str(root)]
    subprocess.run([*run, "commit", "-q", "--allow-empty", "-m", message], check=True)
    return subprocess.run(
        [*run, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def record(version: str, revision: str) -> ImageRecord:
    return ImageRecord(
        repository="registry.test/acme/base",
        version=version,
        digest="sha256:" + "a" * 64,
        tags=[version],
        base=BaseRecord(ref="registry.test/up/debian:12", digest="sha256:" + "b" * 64),
        inputs="sha256:" + "c" * 64,
        built_at=datetime(2026, 12, 1, tzinfo=UTC),
        revision=revision,
        versions={"1.0.0": "sha256:" + "d" * 64},
    )


def test_records_behind_only_claim_commits_are_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "Platform")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "platform@acme.test")
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    assert uncommitted_revisions(tmp_path) == set()  # no commit yet
    seen = commit(tmp_path, "change the manifest")
    claim = commit(tmp_path, "imagectl: claim 1 image")
    # a run that planned at `seen`, claimed, recorded base and was killed before its commit
    heads = uncommitted_revisions(tmp_path)
    assert heads == {seen, claim}
    lock = Lock(images={"base": record("1.0.1", seen + "-dirty")})
    assert pending_lines(lock, heads, set()) == [
        "base 1.0.0 -> 1.0.1 (recorded by an interrupted apply)"
    ]
    assert pending_lines(lock, heads, {"base"}) == []  # this run recorded it itself
    after = commit(tmp_path, "imagectl: rebuild 1 image")
    assert uncommitted_revisions(tmp_path) == {after}
    assert pending_lines(lock, {after}, set()) == []


def test_the_run_revision() -> None:
    assert run_revision_of(None, dirty=True) is None
    assert run_revision_of("abc", dirty=False) == "abc"
    assert run_revision_of("abc", dirty=True) == "abc-dirty"
