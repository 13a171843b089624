"""The README and docs/ as a newcomer meets them: the walkthrough runs, the examples hold."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devenv import local
from devenv.registry import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def block_after(text: str, marker: str, language: str) -> str:
    """The first fenced block of `language` after `marker`."""
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {marker!r}"
    return match.group(1)


@pytest.mark.e2e
def test_readme_walkthrough_runs_as_written(tmp_path: Path, dockerd: str) -> None:
    """The "Your own repository" block: dev env up, init, commit, validate, plan, apply."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    script = block_after(README, "<!-- walkthrough", "sh")
    home, workdir = tmp_path / "home", tmp_path / "env"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),  # `~/my-images` lands in the test's directory
        "IMAGECTL_DEV_WORKDIR": str(workdir),  # never the developer's kept environment
        "IMAGECTL_DEV_PORT": str(free_port()),
        "GIT_AUTHOR_NAME": "Newcomer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.test",
        "GIT_COMMITTER_NAME": "Newcomer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.test",
        "COLUMNS": "200",
    }
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        local.down(workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "imagectl.yaml: ok: 2 images, 1 external base, 1 file" in result.stdout
    assert "Plan: 2 to rebuild, 0 unchanged." in result.stdout
    assert "Apply: 2 built, 0 failed." in result.stdout
    lock = (home / "my-images" / "imagectl.lock").read_text()
    assert f"127.0.0.1:{env['IMAGECTL_DEV_PORT']}/my-images" in lock


def test_manifest_reference_first_example_works_as_pasted(tmp_path: Path) -> None:
    """Pasted over the manifest of an `imagectl init` repository, it validates and lints."""
    first = block_after((ROOT / "docs" / "manifest.md").read_text(), "## A first manifest", "yaml")
    repo = tmp_path / "my-images"

    def imagectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagectl", *args],
            cwd=repo if repo.exists() else tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    assert imagectl("init", str(repo)).returncode == 0
    (repo / "imagectl.yaml").write_text(first)
    validated = imagectl("validate")
    assert validated.returncode == 0, validated.stderr
    assert imagectl("lint").stdout.strip() == "lint: no findings"


def test_complete_reference_marks_its_illustrations() -> None:
    text = (ROOT / "docs" / "manifest.md").read_text()
    reference = block_after(text, "## The complete reference", "yaml")
    for setting in ("include:", "registry: other.example", "secrets:"):
        line = next(line for line in reference.splitlines() if setting in line)
        assert "illustration" in line, line


def test_readme_names_every_package_setup_installs() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    listed = re.search(r"APT_PACKAGES=\((.*?)\)", setup, re.S)
    assert listed is not None
    for package in listed.group(1).split():
        assert f"`{package}`" in README, package


def test_every_command_has_a_section_with_an_example() -> None:
    commands = (ROOT / "docs" / "commands.md").read_text()
    helptext = (ROOT / "imagectl" / "help.txt").read_text()
    names = re.findall(r"^  (\w+)  ", helptext.split("Commands:")[1], re.M)
    assert "init" in names and "plan" in names
    for name in names:
        assert re.search(rf"^## `{name}\b", commands, re.M), f"docs/commands.md: no `{name}`"
        assert f"$ imagectl {name}" in commands, f"docs/commands.md: no example of `{name}`"


def test_readme_stays_short() -> None:
    assert len(README.encode()) < 8000
