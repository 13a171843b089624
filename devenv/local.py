"""The kept local environment: dockerd and a registry on a fixed loopback port.

`scripts/demo.sh` leaves it running so that every later step of the README works;
`scripts/dev.sh` (this module) manages it:

    python -m devenv.local up       # start (or reuse) dockerd, the registry; publish bases
    python -m devenv.local env      # print the exports a shell needs: eval "$(scripts/dev.sh env)"
    python -m devenv.local status   # what runs, where
    python -m devenv.local down     # stop the registry (and a dockerd this environment started)

The registry listens on 127.0.0.1:5055 (`IMAGECTL_DEV_PORT` or `--port` change it); when
that port is taken, `up` picks a free one and says so. Its state lives in
`<workdir>/env.json` (workdir: `--workdir`, `IMAGECTL_DEV_WORKDIR`, else `.imagectl-run/`).
The test suite never uses it: tests start their own registries on free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from devenv.dockerd import DOCKER_HOST, ensure_dockerd, stop_started_dockerd
from devenv.registry import start_registry

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO / ".imagectl-run"
DEFAULT_PORT = 5055
STATE_FILE = "env.json"
# the upstream stand-ins every kept environment holds (busybox, FROM scratch; offline)
UPSTREAM_BASES = (
    ("upstream/debian", "bookworm-slim", "debian 12.7 build 1"),
    ("upstream/alpine", "3.20", "alpine 3.20.3 build 1"),
)


@dataclass(frozen=True)
class LocalEnv:
    """A running kept environment, as recorded in `env.json`."""

    host: str  # 127.0.0.1:PORT
    pid: int
    config: str
    storage: str
    log: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def preferred_port() -> int:
    text = os.environ.get("IMAGECTL_DEV_PORT", "")
    try:
        return int(text) if text else DEFAULT_PORT
    except ValueError:
        raise SystemExit(f"IMAGECTL_DEV_PORT={text!r}: expected a port number") from None


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the registry binds: connections in TIME_WAIT (a registry just stopped) do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _registry_alive(env: LocalEnv) -> bool:
    """Whether `env.pid` is still the registry serving `env.config` (pids get reused)."""
    try:
        argv = Path(f"/proc/{env.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return env.config.encode() in argv


def load(workdir: Path) -> LocalEnv | None:
    """The recorded environment if its registry still runs, else None."""
    try:
        env = LocalEnv(**json.loads((workdir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return env if _registry_alive(env) else None


def _has_manifest(env: LocalEnv, repository: str, tag: str) -> bool:
    accept = ",".join(
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
    )
    try:
        response = httpx.head(
            f"{env.url}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}, timeout=5
        )
    except httpx.TransportError:
        return False
    return response.status_code == 200


def publish_bases(env: LocalEnv) -> list[str]:
    """Push the upstream stand-ins that the registry lacks; returns what was pushed."""
    from devenv.upstream import push_upstream_base

    pushed = []
    for repository, tag, marker in UPSTREAM_BASES:
        if not _has_manifest(env, repository, tag):
            digest = push_upstream_base(env.host, repository, tag, marker)
            pushed.append(f"{env.host}/{repository}:{tag} -> {digest}")
    return pushed


def up(workdir: Path, *, port: int | None = None, fresh: bool = False) -> LocalEnv:
    """Start dockerd (when absent) and the registry (unless it runs); `fresh` empties storage."""
    workdir.mkdir(parents=True, exist_ok=True)
    print(ensure_dockerd(workdir / "dockerd"), flush=True)
    running = load(workdir)
    if running is not None and not fresh:
        return running
    if running is not None:
        _stop_registry(running)
    registry_dir = workdir / "registry"
    if fresh:
        shutil.rmtree(registry_dir, ignore_errors=True)
    wanted = port or preferred_port()
    chosen = wanted if port_is_free(wanted) else 0
    server = start_registry(registry_dir, port=chosen or None, detach=True)
    if not chosen:
        print(f"port {wanted} is taken: the registry listens on {server.host} instead", flush=True)
    env = LocalEnv(
        host=server.host,
        pid=server.process.pid,
        config=str(registry_dir / "config.yml"),
        storage=str(server.root),
        log=str(server.log_path),
    )
    (workdir / STATE_FILE).write_text(json.dumps(asdict(env), indent=2) + "\n")
    return env


def _stop_registry(env: LocalEnv, timeout: float = 10.0) -> None:
    """Stop the registry and wait until its port can be bound again.

    An exiting process drops its command line (what `_registry_alive` reads) before the
    kernel closes its sockets, so "not alive" alone does not mean the port is back.
    """
    if not _registry_alive(env):
        return
    os.kill(env.pid, signal.SIGTERM)
    port = int(env.host.rpartition(":")[2])
    deadline = time.monotonic() + timeout
    killed = False
    while _registry_alive(env) or not port_is_free(port):
        if time.monotonic() > deadline:
            if killed or not _registry_alive(env):
                return
            os.kill(env.pid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + timeout
        time.sleep(0.05)  # waiting for an external process to exit, bounded by the deadline


def down(workdir: Path) -> list[str]:
    """Stop the registry and a dockerd this environment started; returns what was done."""
    done = []
    env = load(workdir)
    if env is None:
        done.append("registry: not running")
    else:
        _stop_registry(env)
        done.append(f"registry: stopped ({env.host}, pid {env.pid}; storage kept in {env.storage})")
    (workdir / STATE_FILE).unlink(missing_ok=True)
    done.append(stop_started_dockerd(workdir / "dockerd"))
    return done


def env_exports(env: LocalEnv) -> list[str]:
    """The lines `eval "$(scripts/dev.sh env)"` runs."""
    values = {
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", DOCKER_HOST),
        "IMAGECTL_DEV_REGISTRY": env.host,
        "IMAGECTL_INIT_BASE": f"{env.host}/upstream/debian:bookworm-slim",
    }
    lines = [f'export PATH={shlex.quote(str(REPO / ".venv" / "bin"))}:"$PATH"']
    return lines + [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def status_lines(workdir: Path) -> tuple[bool, list[str]]:
    """(running, lines describing the environment)."""
    env = load(workdir)
    if env is None:
        return False, [f"registry: not running (start it with scripts/dev.sh up; state {workdir})"]
    lines = [
        f"registry: {env.url} (pid {env.pid})",
        f"storage:  {env.storage}",
        f"log:      {env.log}",
    ]
    gitops = workdir / "gitops"
    if (gitops / "imagectl.yaml").is_file():
        lines.append(f"demo repository: {gitops}")
    return True, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/dev.sh", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("command", choices=["up", "env", "status", "down"])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("IMAGECTL_DEV_WORKDIR") or DEFAULT_WORKDIR),
        help="state, registry storage and logs (default $IMAGECTL_DEV_WORKDIR or .imagectl-run)",
    )
    parser.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_PORT}")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    if args.command == "up":
        try:
            env = up(workdir, port=args.port)
            for line in publish_bases(env):
                print(f"published {line}")
        except RuntimeError as exc:
            print(f"dev.sh up: {exc}", file=sys.stderr)
            return 1
        print(f"registry: {env.url} (storage {env.storage})")
        print('for this shell: eval "$(scripts/dev.sh env)"; stop with: scripts/dev.sh down')
        return 0
    if args.command == "down":
        for line in down(workdir):
            print(line)
        return 0
    running, lines = status_lines(workdir)
    if args.command == "status":
        print("\n".join(lines))
        return 0 if running else 3
    env_ = load(workdir)
    if env_ is None:
        print("the local environment is not running: scripts/dev.sh up", file=sys.stderr)
        return 1
    print("\n".join(env_exports(env_)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
