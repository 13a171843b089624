"""`imagectl init` end to end: the scaffold validates, passes hadolint and reconciles for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv.registry import RegistryServer
from tests.fixtures.builders import UpstreamBase

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Newcomer",
    "GIT_AUTHOR_EMAIL": "newcomer@example.test",
    "GIT_COMMITTER_NAME": "Newcomer",
    "GIT_COMMITTER_EMAIL": "newcomer@example.test",
}


def imagectl(
    cwd: Path, *args: str, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a fresh interpreter, as a user runs it in the repository."""
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "imagectl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, "IMAGECTL_NO_CACHE": "1"},
        timeout=300,
    )


def test_init_scaffold_validates_lints_and_applies(
    tmp_path: Path,
    dockerd: str,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
) -> None:
    base = upstream_base("docker")
    repo = tmp_path / "my-images"
    created = imagectl(
        tmp_path,
        "init",
        "my-images",
        "--registry",
        f"{builder_registry.host}/init-test",
        "--base",
        base.tagged,
        "--workflow",
    )
    assert created.returncode == 0, created.stderr
    assert "initialised a git repository" in created.stdout

    # the schema comment resolves inside the new repository, to the real schema
    first_line = (repo / "imagectl.yaml").read_text().splitlines()[0]
    schema_path = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first_line)
    assert schema_path is not None
    schema = (repo / schema_path.group(1)).read_text()
    assert schema == imagectl(ROOT, "schema").stdout
    assert ".imagectl/" in (repo / ".gitignore").read_text()
    assert (repo / "images" / "base" / ".dockerignore").is_file()
    assert (repo / ".github" / "workflows" / "reconcile.yml").is_file()
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "commit", "-q", "-m", "imagectl init"],
        cwd=repo,
        check=True,
        env={**os.environ, **GIT_ENV},
    )

    validated = imagectl(repo, "validate")
    assert validated.returncode == 0, validated.stderr
    assert "ok: 2 images, 1 external base" in validated.stdout
    linted = imagectl(repo, "lint", "--hadolint")
    assert (linted.returncode, linted.stdout.strip()) == (0, "lint: no findings"), linted.stderr

    # plan --json imports no builder, apply engine or GitPython (issue 12, fast start)
    planned = imagectl(repo, "plan", "--json", python_flags=("-X", "importtime"))
    assert planned.returncode == 0, planned.stderr
    imported = {line.split("|")[-1].strip() for line in planned.stderr.splitlines()}
    assert not {m for m in imported if m.startswith(("imagectl.builders", "imagectl.apply", "git"))}
    actions = json.loads(planned.stdout)["actions"]
    assert [(a["image"], a["reasons"]) for a in actions] == [("base", ["new"]), ("hello", ["new"])]

    applied = imagectl(repo, "apply", "--jobs", "1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply: 2 built, 0 failed." in applied.stdout
    again = imagectl(repo, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert log[0].startswith("imagectl: ") and log[-1] == "imagectl init"


def test_shipped_examples_pass_lint_with_hadolint() -> None:
    linted = imagectl(ROOT, "-f", "examples/imagectl.yaml", "lint", "--hadolint")
    assert (linted.returncode, linted.stdout.strip()) == (0, "lint: no findings")
