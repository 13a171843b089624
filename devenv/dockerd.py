"""A docker daemon for the e2e tests and the quick-start job, started when missing.

The daemon runs without a bridge or iptables rules (a sandbox or CI VM has
neither), so build steps that run commands need ``--network host`` or ``none``.
It listens on the default unix socket only; nothing is exposed on TCP.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from imagectl.proc import CommandTimeout, run

DOCKER_HOST = "unix:///var/run/docker.sock"
_LOCK = Path(tempfile.gettempdir()) / "imagectl-dockerd.lock"


def _docker() -> str:
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def _answers() -> bool:
    try:
        return run([_docker(), "info", "--format", "{{.ServerVersion}}"], timeout=20).ok
    except CommandTimeout:
        return False


def _dockerd_alive() -> bool:
    """Whether a dockerd holds its pid file (it may still be starting up)."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except (OSError, ValueError):
        return False


def ensure_dockerd(workdir: Path, *, ready_timeout: float = 60.0) -> str:
    """Make sure a docker daemon answers; start ``dockerd`` in the background if none does.

    Safe to call from several processes at once (a file lock serialises the start)
    and idempotent. A started daemon runs in its own session and outlives the
    caller; its log is ``workdir/dockerd.log``.

    Args:
        workdir: directory for the daemon's log (created if needed).
        ready_timeout: seconds to wait for the daemon to answer ``docker info``.

    Returns:
        The DOCKER_HOST the daemon answers on.

    Raises:
        RuntimeError: dockerd is not installed, exited, or did not answer in time.
    """
    if _answers():
        return os.environ.get("DOCKER_HOST", DOCKER_HOST)
    if os.environ.get("DOCKER_HOST"):
        raise RuntimeError(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "dockerd.log"
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        proc: subprocess.Popen[bytes] | None = None
        if not _answers() and not _dockerd_alive():
            if shutil.which("dockerd") is None:
                raise RuntimeError("dockerd is not installed: apt-get install docker.io")
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [
                        "dockerd",
                        "--bridge=none",
                        "--iptables=false",
                        "--host",
                        DOCKER_HOST,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        deadline = time.monotonic() + ready_timeout
        while not _answers():
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dockerd did not answer within {ready_timeout:g}s; see {log_path}"
                )
            time.sleep(0.2)  # readiness poll of an external daemon, bounded by the deadline
    return DOCKER_HOST
