"""A docker daemon for the e2e tests and the quick-start job, started when missing.

The daemon runs without a bridge or iptables rules (a sandbox or CI VM has
neither), so build steps that run commands need ``--network host`` or ``none``.
It listens on the default unix socket only; nothing is exposed on TCP.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from imagectl.proc import CommandTimeout, run

DOCKER_HOST = "unix:///var/run/docker.sock"
_LOCK = Path(tempfile.gettempdir()) / "imagectl-dockerd.lock"
STARTED_PID = "started.pid"  # in the work directory: the dockerd this module started


def docker_cli() -> str:
    """The docker client to run: docker.io's (BuildKit built in) when installed."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


PERMISSION_HINT = (
    "add your user to the docker group (sudo usermod -aG docker $USER, then log in again), "
    "or run as root"
)


def _answers() -> bool:
    """Whether a daemon answers; a permission error is raised at once, never waited out."""
    try:
        result = run([docker_cli(), "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except CommandTimeout:
        return False
    if not result.ok and "permission denied" in result.output.lower():
        raise RuntimeError(f"{_socket_path()}: permission denied: {PERMISSION_HINT}")
    return result.ok


def _socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", DOCKER_HOST)
    return host.removeprefix("unix://")


def _start_command() -> list[str]:
    """dockerd's command line; through `sudo -n` when not root (setup.sh installs as sudo)."""
    argv = ["dockerd", "--bridge=none", "--iptables=false", "--host", DOCKER_HOST]
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo") is None:
        raise RuntimeError("dockerd is not running and starting it needs root: run as root")
    return ["sudo", "-n", *argv]


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
        RuntimeError: dockerd is not installed, exited, did not answer in time, or
            its socket refuses this user (the docker group is missing).
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
                    _start_command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            (workdir / STARTED_PID).write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + ready_timeout
        while not _answers():
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                hint = ""
                if "password is required" in tail or "a terminal is required" in tail:
                    hint = "\nstarting dockerd needs root: run `sudo true` first, or run as root"
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{tail}{hint}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dockerd did not answer within {ready_timeout:g}s; see {log_path}"
                )
            time.sleep(0.2)  # readiness poll of an external daemon, bounded by the deadline
    return DOCKER_HOST


def _pid_alive(pid: int, names: tuple[str, ...]) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in names
    except OSError:
        return False


def stop_started_dockerd(workdir: Path, *, timeout: float = 30.0) -> str:
    """Stop the dockerd that `ensure_dockerd(workdir)` started; leave any other one alone.

    Returns:
        What was done, for the user.
    """
    pid_file = workdir / STARTED_PID
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return "dockerd: not started by this environment; left running"
    pid_file.unlink(missing_ok=True)
    if not _pid_alive(pid, ("dockerd", "sudo")):
        return "dockerd: already stopped"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid, ("dockerd", "sudo")):
        if time.monotonic() > deadline:
            return f"dockerd: pid {pid} did not stop within {timeout:g}s"
        time.sleep(0.2)  # waiting for an external daemon's shutdown, bounded by the deadline
    return f"dockerd: stopped (pid {pid})"
