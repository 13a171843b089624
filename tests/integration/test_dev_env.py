"""The kept local environment (`scripts/dev.sh`, devenv/local.py) on a real registry process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devenv import local
from devenv.registry import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path, dockerd: str) -> Iterator[Path]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    yield tmp_path / "env"
    local.down(tmp_path / "env")


def dev_sh(workdir: Path, *args: str, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGECTL_DEV_WORKDIR": str(workdir), "IMAGECTL_DEV_PORT": str(port)}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_taken_port_is_replaced_and_said(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = local.up(workdir, port=port)
    assert env.host != f"127.0.0.1:{port}"
    assert f"port {port} is taken: the registry listens on {env.host} instead" in (
        capsys.readouterr().out
    )
    assert httpx.get(f"{env.url}/v2/", timeout=5).status_code == 200


def test_up_reuses_a_running_registry_and_fresh_empties_it(workdir: Path) -> None:
    port = free_port()
    first = local.up(workdir, port=port)
    assert first.host == f"127.0.0.1:{port}"
    marker = Path(first.storage) / "marker"
    marker.write_text("x")
    assert local.up(workdir, port=port) == first  # same process, nothing restarted
    fresh = local.up(workdir, port=port, fresh=True)
    assert fresh.pid != first.pid and fresh.host == first.host  # the port is reused at once
    assert not marker.exists()


def test_dev_sh_status_env_and_down(workdir: Path) -> None:
    port = free_port()
    assert dev_sh(workdir, "status", port=port).returncode == 3
    assert dev_sh(workdir, "env", port=port).returncode == 1
    env = local.up(workdir, port=port)
    status = dev_sh(workdir, "status", port=port)
    assert status.returncode == 0 and f"registry: http://127.0.0.1:{port}" in status.stdout
    exports = dev_sh(workdir, "env", port=port).stdout.splitlines()
    assert f"export IMAGECTL_DEV_REGISTRY=127.0.0.1:{port}" in exports
    assert f"export IMAGECTL_INIT_BASE=127.0.0.1:{port}/upstream/debian:bookworm-slim" in exports
    assert exports[0] == f'export PATH={ROOT / ".venv" / "bin"}:"$PATH"'
    down = dev_sh(workdir, "down", port=port)
    assert down.returncode == 0, down.stderr
    assert f"registry: stopped (127.0.0.1:{port}, pid {env.pid}" in down.stdout
    assert "dockerd: not started by this environment; left running" in down.stdout
    assert local.load(workdir) is None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{env.url}/v2/", timeout=2)


def test_demo_keeps_the_environment_for_the_next_steps(tmp_path: Path, dockerd: str) -> None:
    """A fresh run of the quick-start job; afterwards the README's next step works."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    workdir = tmp_path / "run"
    port = free_port()
    env = {**os.environ, "IMAGECTL_DEV_PORT": str(port), "COLUMNS": "200"}
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "devenv.demo", "--workdir", str(workdir)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "Plan: 0 to rebuild, 6 unchanged." in demo.stdout
        assert f"registry http://127.0.0.1:{port}; the demo's repository is" in demo.stdout
        status = dev_sh(workdir, "status", port=port)
        assert status.returncode == 0 and str(workdir / "gitops") in status.stdout
        plan = subprocess.run(
            [sys.executable, "-m", "imagectl", "plan", "--detailed-exitcode"],
            cwd=workdir / "gitops",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert plan.returncode == 0, plan.stdout + plan.stderr
    finally:
        local.down(workdir)
