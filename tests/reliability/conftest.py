"""Fixtures of the reliability tests: git-ops repos driven through the real CLI, a real
registry (directly or behind the fault proxy), a real dockerd, and a build gate.

The gate is a loopback HTTP server that build steps call (``RUN wget …/<token>``,
the builds use the host network): the request arriving tells the test that the
build is running, and the build goes on only when the test releases the token.
That makes "during a build" deterministic without sleeping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import httpx
import pytest
from ruamel.yaml import YAML

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from tests.fixtures.builders import MANIFEST_ACCEPT
from tests.reliability.fault_proxy import FaultProxy

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform",
    "GIT_AUTHOR_EMAIL": "platform@acme.test",
    "GIT_COMMITTER_NAME": "Platform",
    "GIT_COMMITTER_EMAIL": "platform@acme.test",
}
# Fast retries so that faults cost milliseconds (the policy's shape is unchanged).
FAST_RETRY = {"IMAGECTL_RETRY_BASE_DELAY": "0.01", "IMAGECTL_RETRY_MAX_DELAY": "0.05"}
GATE_LIMIT = 120.0  # seconds a gated build waits at most
RUN_LIMIT = 300.0  # seconds one CLI run may take at most

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN echo {name} >> /layers
COPY {name}.txt /{name}.txt
"""
GATED_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN wget -q -O /gate {gate_url}
COPY {name}.txt /{name}.txt
"""
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"
VERSION_TAG = re.compile(r"\d+\.\d+\.\d+")


# ---------------------------------------------------------------------------- registry


def registry_get(host: str, path: str, method: str = "GET") -> httpx.Response:
    return httpx.request(
        method,
        f"http://{host}/v2/{path}",
        headers={"Accept": MANIFEST_ACCEPT},
        timeout=30,
        follow_redirects=True,
    )


@dataclass
class Registry:
    """Direct (unfaulted) reads of the real registry, to check what imagectl left there."""

    host: str

    def digest(self, repository: str, tag: str) -> str | None:
        response = registry_get(self.host, f"{repository}/manifests/{tag}", "HEAD")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> list[str]:
        response = registry_get(self.host, f"{repository}/tags/list")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def labels(self, repository: str, tag: str) -> dict[str, str]:
        manifest = registry_get(self.host, f"{repository}/manifests/{tag}")
        manifest.raise_for_status()
        digest = manifest.json()["config"]["digest"]
        config = registry_get(self.host, f"{repository}/blobs/{digest}")
        config.raise_for_status()
        return dict(config.json()["config"]["Labels"])


# ---------------------------------------------------------------------------- processes


class Running:
    """A CLI run in the background, its own process group, output collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches this group, not the builds
        )
        self.pid = self.proc.pid
        self._out: list[str] = []
        self._err: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes], sink: list[str]) -> None:
        for line in iter(stream.readline, b""):
            with self._cond:
                sink.append(line.decode("utf-8", errors="replace"))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._err)

    def wait_output(self, pattern: str, timeout: float = 60.0) -> None:
        """Block until stdout or stderr matches `pattern` (or the process ends)."""
        regex = re.compile(pattern)

        def seen() -> bool:
            return bool(regex.search("".join(self._out) + "".join(self._err)))

        with self._cond:
            if not self._cond.wait_for(lambda: seen() or self.proc.poll() is not None, timeout):
                raise TimeoutError(f"no {pattern!r} within {timeout}s:\n{self.output}")
            if not seen():
                raise AssertionError(
                    f"exited {self.proc.returncode} before {pattern!r}:\n{self.output}"
                )

    def wait(self, timeout: float = RUN_LIMIT) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(10)
        return code

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- git-ops repo


@dataclass
class Repo:
    """A git-ops repository under test, the CLI run on it, and what it left behind."""

    root: Path
    registry: Registry
    namespace: str
    env: dict[str, str] = field(default_factory=dict)
    running: list[Running] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.root / "imagectl.yaml"

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        dropped = ("IMAGECTL_FAULT_KILL_AT", "IMAGECTL_FILE")
        inherited = {k: v for k, v in os.environ.items() if k not in dropped}
        return {**inherited, **GIT_ENV, **FAST_RETRY, **self.env, **(env or {})}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "imagectl", "-f", str(self.manifest), *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            capture_output=True,
            text=True,
            env=self._env(env),
            timeout=RUN_LIMIT,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.run(*args, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self, *args: str, env: dict[str, str] | None = None) -> Running:
        running = Running(self.argv(*args), self.root, self._env(env))
        self.running.append(running)
        return running

    def plan(self) -> dict[str, object]:
        return dict(json.loads(self.ok("plan", "--json")))

    def planned(self) -> list[str]:
        return [str(a["image"]) for a in self.plan()["actions"]]  # type: ignore[attr-defined]

    def lock(self) -> dict[str, dict[str, object]]:
        path = self.root / "imagectl.lock"
        if not path.exists():
            return {}
        data = YAML(typ="safe").load(path.read_text())
        return dict(data.get("images") or {})

    def repository(self, image: str) -> str:
        return f"{self.namespace}/{image}"

    def digest(self, image: str, tag: str) -> str | None:
        return self.registry.digest(self.repository(image), tag)

    def tags(self, image: str) -> list[str]:
        return self.registry.tags(self.repository(image))

    def versions(self, image: str) -> list[str]:
        """The immutable version tags of `image` in the registry, oldest first."""
        found = [t for t in self.tags(image) if VERSION_TAG.fullmatch(t)]
        return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))

    def labels(self, image: str, tag: str) -> dict[str, str]:
        return self.registry.labels(self.repository(image), tag)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, check=True
        ).stdout

    def lock_committed(self) -> bool:
        """The lock is tracked and identical to HEAD's (nothing staged, changed or untracked)."""
        return self.git("status", "--porcelain", "--", "imagectl.lock") == "" and bool(
            self.git("ls-files", "--", "imagectl.lock")
        )

    def commit_all(self, message: str) -> None:
        self.git("add", "-A")
        subprocess.run(
            ["git", "commit", "-qm", message],
            cwd=self.root,
            check=True,
            env={**os.environ, **GIT_ENV},
        )


def write_repo(
    root: Path,
    registry: Registry,
    push_host: str,
    base_ref: str,
    images: dict[str, str],
    *,
    dockerfiles: dict[str, str] | None = None,
    namespace: str | None = None,
) -> Repo:
    """A git-ops repo: `images` maps each image to its base (another image or "upstream").

    The manifest pushes to `push_host` (the registry, or the fault proxy before it).
    """
    namespace = namespace or f"rel-{uuid.uuid4().hex[:10]}"
    root.mkdir(parents=True)
    lines = [
        "version: 1",
        f"registry: {push_host}/{namespace}",
        "defaults:",
        "  builder: docker",
        "  network: host",
        "bases:",
        "  upstream:",
        f"    ref: {base_ref}",
        "families:",
        "  all:",
        "    images:",
    ]
    for name, base in images.items():
        (root / name).mkdir()
        text = (dockerfiles or {}).get(name) or DOCKERFILE.format(name=name)
        (root / name / "Dockerfile").write_text(text)
        (root / name / f"{name}.txt").write_text(f"{name} v1\n")
        lines += [
            f"      {name}:",
            f"        from: {base}",
            f"        context: {name}",
            '        version: "1.0"',
        ]
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=root, check=True, env={**os.environ, **GIT_ENV})
    return Repo(root, registry, namespace)


# ---------------------------------------------------------------------------- gate


class Gate:
    """Loopback HTTP server holding each `/<token>` request until the test lets it through."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.arrived: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self._permits: dict[str, float] = {}
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                token = self.path.strip("/")
                with gate._cond:
                    gate.arrived[token] = gate.arrived.get(token, 0) + 1
                    gate._cond.notify_all()
                    gate._cond.wait_for(lambda: gate._permits.get(token, 0) > 0, GATE_LIMIT)
                    gate._permits[token] = gate._permits.get(token, 0) - 1
                    gate.passed[token] = gate.passed.get(token, 0) + 1
                    gate._cond.notify_all()
                body = b"go\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(self) -> str:
        return uuid.uuid4().hex[:12]

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}"

    def dockerfile(self, name: str, token: str) -> str:
        return GATED_DOCKERFILE.format(name=name, gate_url=self.url(token))

    def wait_arrived(self, token: str, count: int = 1, timeout: float = 120.0) -> None:
        """Block until `count` builds are waiting at (or went through) `token`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.arrived.get(token, 0) >= count, timeout):
                raise TimeoutError(f"{self.arrived.get(token, 0)} builds reached gate {token}")

    def release(self, token: str, count: float = float("inf")) -> None:
        """Let `count` builds through `token` (default: every build, now and later)."""
        with self._cond:
            self._permits[token] = self._permits.get(token, 0) + count
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            for token in self.arrived:
                self._permits[token] = float("inf")
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def registry(builder_registry: RegistryServer, dockerd: str) -> Registry:
    return Registry(builder_registry.host)


@pytest.fixture
def proxy(builder_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(builder_registry.host)
    yield proxy
    proxy.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.close()


UpstreamFactory = Callable[[str], str]


@pytest.fixture
def upstream(registry: Registry) -> UpstreamFactory:
    """Publish (or re-publish: a vendor update) a unique upstream base; returns its digest.

    The base is ``<host>/<upstream.repository>:stable`` on whichever host reaches the
    registry (directly or through the proxy).
    """
    repository = f"upstream/base-{uuid.uuid4().hex[:8]}"

    def publish(marker: str) -> str:
        return push_upstream_base(registry.host, repository, "stable", marker)

    publish.repository = repository  # type: ignore[attr-defined]
    return publish


def base_ref(host: str, upstream: UpstreamFactory) -> str:
    return f"{host}/{upstream.repository}:stable"  # type: ignore[attr-defined]


@pytest.fixture
def repos(tmp_path: Path) -> Iterator[list[Repo]]:
    """Repos made by a test; their background runs are killed when the test ends."""
    made: list[Repo] = []
    yield made
    for repo in made:
        for running in repo.running:
            running.kill()


@pytest.fixture
def make_repo(tmp_path: Path, registry: Registry, repos: list[Repo]) -> Callable[..., Repo]:
    """Factory: a git-ops repo of `images` on `upstream`, pushing to `host` (default: the
    registry itself; pass the fault proxy's host to put the proxy in between)."""

    def make(
        name: str,
        images: dict[str, str],
        upstream: UpstreamFactory,
        *,
        host: str | None = None,
        dockerfiles: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> Repo:
        host = host or registry.host
        repo = write_repo(
            tmp_path / name,
            registry,
            host,
            base_ref(host, upstream),
            images,
            dockerfiles=dockerfiles,
            namespace=namespace,
        )
        repos.append(repo)
        return repo

    return make
