"""A real OCI registry (Debian's `docker-registry`, the reference distribution) on loopback.

Used by the tests' session fixtures and by the quick-start job. Never binds anything
but 127.0.0.1; storage lives in the given work directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REGISTRY_BINARY = "docker-registry"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RegistryServer:
    """A running registry process."""

    host: str  # "127.0.0.1:PORT"
    root: Path
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    log_path: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _config_yaml(storage: Path, port: int, extra: str) -> str:
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: imagectl-tests-only
{extra}"""


def start_registry(
    workdir: Path,
    *,
    extra_config: str = "",
    scheme: str = "http",
    ready_timeout: float = 30.0,
    verify: bool | str = True,
) -> RegistryServer:
    """Start `docker-registry serve` on a free loopback port; wait until it answers /v2/.

    Args:
        workdir: directory for the config, storage and log (created if needed).
        extra_config: YAML appended at top level of the config (auth:, TLS under http:
            must be given fully indented by the caller).
        scheme: "http" or "https" (when extra_config configures TLS).
        ready_timeout: seconds to wait for the registry to answer.
        verify: CA bundle path (or bool) used for the readiness probe over https.
    """
    if shutil.which(REGISTRY_BINARY) is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_config_yaml(storage, port, extra_config))
    log_path = workdir / "registry.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = RegistryServer(
        host=f"127.0.0.1:{port}", root=storage, process=proc, scheme=scheme, log_path=log_path
    )
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            httpx.get(f"{server.url}/v2/", timeout=1.0, verify=verify)
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"registry on {server.host} did not answer in time") from None
            time.sleep(0.05)  # readiness poll of an external process, bounded by the deadline
