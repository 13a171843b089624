"""`status` when the registry cannot be reached: the lock's records, staleness unknown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devenv.registry import free_port
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, write_lock

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "a" * 64
BASE = "sha256:" + "b" * 64


def write_repo(root: Path, host: str) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    manifest = root / "imagectl.yaml"
    manifest.write_text(
        f"""version: 1
registry: {host}/acme
bases:
  debian: {{ref: "{host}/upstream/debian:12"}}
families:
  runtime:
    from: debian
    images:
      app: {{context: app, version: "1.4"}}
      tools: {{context: app, version: "2.0"}}
"""
    )
    record = ImageRecord(
        repository=f"{host}/acme/app",
        version="1.4.2",
        digest=DIGEST,
        tags=["1.4.2", "1.4"],
        base=BaseRecord(ref=f"{host}/upstream/debian:12", digest=BASE),
        inputs="sha256:" + "1" * 64,
        built_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        revision=None,
    )
    write_lock(root / "imagectl.lock", Lock().with_image("app", record))
    return manifest


def status(manifest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGECTL_RETRY_ATTEMPTS": "1", "COLUMNS": "200"}
    argv = ["-m", "imagectl", "-f", str(manifest), "status", "--now", "2026-11-30T12:00:00Z"]
    return subprocess.run(
        [sys.executable, *argv, *args], capture_output=True, text=True, env=env, check=False
    )


def test_status_shows_the_lock_when_the_registry_is_unreachable(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    manifest = write_repo(tmp_path, host)

    done = status(manifest)
    assert done.returncode == 0, done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "1.4.2" in lines["app"] and DIGEST[:19] in lines["app"] and "1d" in lines["app"]
    assert "unknown" in lines["app"] and "unknown" in lines["tools"]
    assert "2 images, staleness unknown" in done.stdout
    assert f"cannot reach {host}" in done.stdout
    assert "Traceback" not in done.stderr

    done = status(manifest, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert f"cannot reach {host}" in document["registry_error"]
    rows = {row["image"]: row for row in document["images"]}
    assert rows["app"]["version"] == "1.4.2" and rows["app"]["digest"] == DIGEST
    assert rows["app"]["stale"] is None and rows["app"]["reasons"] is None
    assert rows["tools"]["version"] is None and rows["tools"]["stale"] is None
