"""`plan --explain`: snapshots of inputs, and the evidence lines (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagectl.explain import (
    explain_lines,
    file_changes,
    load_snapshot,
    param_changes,
    remember,
    snapshot_dir,
)
from imagectl.inputs import ContextHasher
from imagectl.observe import image_inputs
from imagectl.plan.model import Action, BaseUse, BuiltState, StaleReason
from tests.unit.test_frontend import repo


def test_file_changes_list_each_kind_and_cap_long_lists() -> None:
    old = {"a": "f:1", "b": "f:2", "run.sh": "f:3"}
    new = {"a": "f:1", "run.sh": "x:3", "c": "f:4"}
    assert file_changes(old, new) == [
        "context files: 1 added, 1 changed, 1 removed",
        "  + c",
        "  ~ run.sh",
        "  - b",
    ]
    assert file_changes(old, old) == []
    many = file_changes({}, {f"f{i:03}": "f:0" for i in range(60)})
    assert many[0] == "context files: 60 added, 0 changed, 0 removed"
    assert many[-1] == "  + … and 10 more" and len(many) == 52


def test_param_changes_name_each_arg_and_hide_secret_values() -> None:
    old = {"args": {"GREETING": "hi", "DB_PASSWORD": "old-pw"}, "target": None}
    new = {"args": {"GREETING": "hello", "DB_PASSWORD": "new-pw", "X": "1"}, "target": "prod"}
    lines = param_changes(old, new)
    assert lines == [
        "build arg DB_PASSWORD: (value not shown) -> (value not shown)",
        'build arg GREETING: "hi" -> "hello"',
        'build arg X: (unset) -> "1"',
        'target: null -> "prod"',
    ]


def test_snapshots_are_stored_once_per_inputs_digest_and_read_back(tmp_path: Path) -> None:
    manifest = repo(tmp_path, {"app": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"})
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    hasher = ContextHasher(manifest.root_dir)
    inputs = image_inputs(manifest, hasher)
    remember(manifest, hasher, inputs, {})
    stored = sorted(p.name for p in snapshot_dir(tmp_path).iterdir())
    assert len(stored) == 2 and stored[0].startswith("context-") and stored[1] == "inputs.jsonl"
    journal = (snapshot_dir(tmp_path) / "inputs.jsonl").read_bytes()
    snapshot = load_snapshot(tmp_path, inputs["app"])
    assert snapshot is not None and set(snapshot.files) == {"Dockerfile", "main.py"}
    assert snapshot.params["args"] == {}
    remember(manifest, hasher, inputs, {})
    assert sorted(p.name for p in snapshot_dir(tmp_path).iterdir()) == stored
    assert (snapshot_dir(tmp_path) / "inputs.jsonl").read_bytes() == journal  # nothing new
    assert load_snapshot(tmp_path, "sha256:" + "0" * 64) is None
    assert (tmp_path / ".imagectl" / ".gitignore").read_text().endswith("*\n")


def test_a_plan_appends_only_new_digests_and_a_torn_line_is_stored_again(
    tmp_path: Path,
) -> None:
    manifest = repo(tmp_path, {"app": "FROM scratch\n", "web": "FROM busybox\n"})
    hasher = ContextHasher(manifest.root_dir)
    inputs = image_inputs(manifest, hasher)
    journal = snapshot_dir(tmp_path) / "inputs.jsonl"
    remember(manifest, hasher, {"app": inputs["app"]}, {})
    assert len(journal.read_bytes().splitlines()) == 1
    remember(manifest, hasher, inputs, {})  # app is known: only web is added
    lines = journal.read_bytes().splitlines()
    assert [line.split(b" ")[0].decode() for line in lines] == [inputs["app"], inputs["web"]]
    journal.write_bytes(lines[0] + b"\n" + lines[1][:-5])  # a crash tore web's line
    assert load_snapshot(tmp_path, inputs["web"]) is None
    remember(manifest, hasher, inputs, {})
    snapshot = load_snapshot(tmp_path, inputs["web"])
    assert snapshot is not None and set(snapshot.files) == {"Dockerfile"}


def test_a_snapshot_file_of_an_older_cache_is_still_read(tmp_path: Path) -> None:
    manifest = repo(tmp_path, {"app": "FROM scratch\n"})
    hasher = ContextHasher(manifest.root_dir)
    inputs = image_inputs(manifest, hasher)
    remember(manifest, hasher, inputs, {})
    where = snapshot_dir(tmp_path)
    digest, record = (where / "inputs.jsonl").read_text().split(" ", 1)
    (where / "inputs.jsonl").unlink()
    (where / (digest.removeprefix("sha256:") + ".json")).write_text(record)
    snapshot = load_snapshot(tmp_path, digest)
    assert snapshot is not None and snapshot.params["target"] is None


def test_no_snapshot_is_kept_when_the_cache_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    manifest = repo(tmp_path, {"app": "FROM scratch\n"})
    hasher = ContextHasher(manifest.root_dir)
    remember(manifest, hasher, image_inputs(manifest, hasher), {})
    assert not snapshot_dir(tmp_path).exists()


def test_without_the_old_snapshot_explain_says_so(tmp_path: Path) -> None:
    manifest = repo(tmp_path, {"app": "FROM scratch\n"})
    image = manifest.images["app"]
    built = BuiltState("1.0.0", "sha256:" + "d" * 64, "r/b:1", "sha256:" + "b" * 64, "x", NOW)
    action = Action(
        image="app",
        family="f",
        repository=image.repository,
        reasons=(StaleReason.INPUTS_CHANGED, StaleReason.FORCED),
        from_version="1.0.0",
        to_version="1.0.1",
        tags=("1.0.1",),
        held_tags=(),
        depends_on=(),
        base=BaseUse("b", "r/b:1", "sha256:" + "b" * 64, False),
        inputs="y",
        depth=0,
    )
    lines = explain_lines(action, image, built, NOW, tmp_path, None, None)
    assert lines[0] == "app 1.0.0 -> 1.0.1"
    assert lines[2].startswith("    no snapshot of the last build's inputs on this machine")
    assert lines[3:] == ["  forced:", "    asked for with --force"]


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
