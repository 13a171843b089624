"""scripts/setup.sh and devenv/dockerd.py: what a newcomer's first run meets, with fake tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devenv import dockerd

ROOT = Path(__file__).resolve().parents[2]


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_permission_denied_on_the_socket_is_named_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = fake_tool(
        tmp_path,
        "docker",
        "echo 'permission denied while trying to connect to the Docker daemon socket' >&2; exit 1",
    )
    monkeypatch.setattr(dockerd, "docker_cli", lambda: str(docker))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"permission denied: add your user to the docker group"):
        dockerd.ensure_dockerd(tmp_path / "work", ready_timeout=60)
    assert time.monotonic() - started < 20  # never waits out the 60 s readiness deadline


def test_dockerd_starts_through_sudo_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert dockerd._start_command()[:3] == ["sudo", "-n", "dockerd"]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert dockerd._start_command()[0] == "dockerd"


def test_stop_started_dockerd_leaves_a_foreign_daemon_alone(tmp_path: Path) -> None:
    assert "left running" in dockerd.stop_started_dockerd(tmp_path)


@pytest.fixture
def setup_copy(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A copy of setup.sh beside this project's pyproject and venv, with fake system tools."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("setup.sh", "fetch-arm64-busybox.sh"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts" / script)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    fake_tool(repo / ".venv" / "bin", "python", f'exec {sys.executable} "$@"')
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "calls"
    fake_tool(bin_dir, "dpkg", 'case "$2" in python3-venv|shellcheck) exit 1;; esac; exit 0')
    fake_tool(bin_dir, "id", "echo 1000")
    fake_tool(bin_dir, "sudo", f'echo "sudo $*" >>{calls}; exec "$@"')
    fake_tool(
        bin_dir,
        "apt-get",
        f'echo "apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >>{calls}; '
        "echo 'debconf: delaying package configuration' >&2",
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable}
    return repo, calls, env


def test_setup_installs_missing_packages_quietly_through_sudo(
    setup_copy: tuple[Path, Path, dict[str, str]],
) -> None:
    repo, calls, env = setup_copy
    want = subprocess.run(
        ["sha256sum", str(repo / "pyproject.toml")], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    version = subprocess.run([sys.executable, "-V"], capture_output=True, text=True).stdout.strip()
    (repo / ".venv" / ".imagectl-setup").write_text(f"{want} {version}\n")  # pip: nothing to do
    result = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=repo, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "setup: installing Debian packages: python3-venv shellcheck",
        "setup: ready (.venv/bin/imagectl)",
    ]
    assert result.stderr == ""  # neither debconf nor pip talk on a good run
    lines = calls.read_text().splitlines()
    installs = [line for line in lines if line.startswith("apt-get") and " install " in line]
    assert installs and "DEBIAN_FRONTEND=noninteractive" in installs[0]
    assert installs[0].endswith("python3-venv shellcheck")
    assert any(line.startswith("sudo env DEBIAN_FRONTEND=noninteractive") for line in lines)


def test_setup_lists_python_shellcheck_and_ca_certificates() -> None:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    for package in ("python3", "python3-venv", "shellcheck", "ca-certificates"):
        assert f" {package} " in text or f"({package} " in text or f" {package})" in text
