"""`plan --explain IMAGE` on a real registry, dockerd and git: the evidence of each reason."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from imagectl.domain.schedules import parse_schedule
from imagectl.lockfile import read_lock
from tests.fixtures.builders import manifest_digest
from tests.reliability.conftest import GIT_ENV

pytestmark = pytest.mark.e2e

DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG GREETING=none\nCOPY . /app/\nUSER 10001\n"


def manifest(host: str, namespace: str, upstream: str, args: str = "") -> str:
    return (
        f"version: 1\nregistry: {host}/{namespace}\n"
        "defaults: {builder: docker, network: host}\n"
        f"bases: {{upstream: {{ref: '{upstream}'}}}}\n"
        "families:\n  all:\n    images:\n"
        '      base: {from: upstream, context: base, version: "1.0", rebuild: weekly}\n'
        f'      app: {{from: base, context: app, version: "2.0"{args}}}\n'
    )


def cli(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGECTL_FILE")}
    done = subprocess.run(
        [sys.executable, "-m", "imagectl", "-f", str(root / "imagectl.yaml"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**env, **GIT_ENV},
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.stdout


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, env={**os.environ, **GIT_ENV})


def test_explain_shows_files_args_base_digests_and_the_schedule(
    tmp_path: Path, dockerd: str, builder_registry: RegistryServer
) -> None:
    host = builder_registry.host
    namespace = f"explain-{uuid.uuid4().hex[:8]}"
    upstream_repo = f"upstream/explain-{uuid.uuid4().hex[:8]}"
    first = push_upstream_base(host, upstream_repo, "stable", "v1")
    root = tmp_path / "repo"
    for image in ("base", "app"):
        (root / image).mkdir(parents=True)
        (root / image / "Dockerfile").write_text(DOCKERFILE)
    (root / "app" / "main.py").write_text("print(1)\n")
    (root / "app" / "old.txt").write_text("old\n")
    upstream = f"{host}/{upstream_repo}:stable"
    (root / "imagectl.yaml").write_text(manifest(host, namespace, upstream))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    cli(root, "apply")
    built = read_lock(root / "imagectl.lock")
    assert built is not None
    built_at = built.images["base"].built_at

    (root / "app" / "main.py").write_text("print(2)\n")
    (root / "app" / "new.py").write_text("x = 1\n")
    (root / "app" / "old.txt").unlink()
    (root / "imagectl.yaml").write_text(
        manifest(host, namespace, upstream, args=", args: {GREETING: hello}")
    )
    git(root, "add", "-A")
    git(root, "commit", "-qm", "change app")
    second = push_upstream_base(host, upstream_repo, "stable", "v2")
    when = built_at + timedelta(days=8)
    later = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    due = parse_schedule("weekly").latest_occurrence(when, since=built_at)
    assert due is not None and built_at < due <= when

    app = cli(root, "plan", "--explain", "app", "--now", later)
    assert app.splitlines() == [
        "app 2.0.0 -> 2.0.1",
        "  inputs-changed:",
        "    context files: 1 added, 1 changed, 1 removed",
        "      + new.py",
        "      ~ main.py",
        "      - old.txt",
        'build arg GREETING: (unset) -> "hello"'.join(["    ", ""]),
        "  base-rebuilt:",
        f"    base image base ({host}/{namespace}/base:1.0.1)",
        f"    {manifest_digest(host, f'{namespace}/base', '1.0.0')[:19]}… -> built in this plan",
    ]
    base = cli(root, "plan", "--explain", "base", "--now", later)
    assert base.splitlines() == [
        "base 1.0.0 -> 1.0.1",
        "  base-updated:",
        f"    base upstream follows {upstream}",
        f"    {first[:19]}… -> {second[:19]}…",
        "  schedule-due:",
        f"    rebuild: 'weekly' fell due at {due:%Y-%m-%dT%H:%M:%SZ}; the last build was at "
        f"{built_at:%Y-%m-%dT%H:%M:%SZ}",
    ]
    cli(root, "apply")
    assert cli(root, "plan", "--explain", "app").startswith("app is up to date: 2.0.1 built at ")
