"""Bad input: every malformed manifest and lock of `bad/` is refused cleanly.

For each case directory (format in `bad/README.md`), `imagectl validate`, `plan` and
`apply` each run on a fresh copy of it and must: exit 1, print every line of
`expected.txt` (the located message) on stderr, print no traceback, leave every
file of the copy (and beside it) byte for byte as it was, and send no request to
the registry: every registry and base of the corpus points at a counting HTTP
server of this module, which must see no connection at all. Lock cases hold a
valid manifest and a bad `imagectl.lock`: `validate` (which does not read the
lock) passes, `plan` and `apply` fail as above.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.record import result

pytestmark = pytest.mark.reliability

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.name for p in BAD.iterdir() if (p / "expected.txt").is_file())
COMMANDS = ("validate", "plan", "apply")
PLACEHOLDER = "LOOPBACK"
RUN_LIMIT = 60.0  # seconds; a hang (an alias bomb expanding) is a failure, not a wait
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
# What a successful load may write (imagectl/manifest/cache.py): lock cases' validate only.
MANIFEST_CACHE = frozenset(
    {
        "repo/.imagectl",
        "repo/.imagectl/.gitignore",
        "repo/.imagectl/cache",
        "repo/.imagectl/cache/manifest.json",
    }
)


# ---------------------------------------------------------------------------- helpers


class _CountingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections = 0
        self.requests: list[str] = []
        self.guard = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.guard:
            self.connections += 1  # counted on accept: even a request never sent counts
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _CountingHTTPServer

    def _answer(self) -> None:
        with self.server.guard:
            self.server.requests.append(f"{self.command} {self.path}")
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class CountingRegistry:
    """A loopback HTTP server standing in for every registry: it counts what reaches it."""

    server: _CountingHTTPServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def connections(self) -> int:
        return self.server.connections

    @property
    def requests(self) -> list[str]:
        return list(self.server.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def counting_server() -> CountingRegistry:
    """Start a counting registry stand-in on a free loopback port."""
    server = _CountingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return CountingRegistry(server, thread)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (symlinks not followed): kind, mode and content hash."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = f"symlink -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = f"dir {stat.S_IMODE(info.st_mode):o}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = f"file {stat.S_IMODE(info.st_mode):o} {digest}"
    return found


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    changes = [f"created {p}" for p in sorted(after.keys() - before.keys())]
    changes += [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    changes += [f"changed {p}" for p in sorted(before) if p in after and before[p] != after[p]]
    return changes


def cli_env(docker_config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus what would steer imagectl elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGECTL_", "GITHUB_")) and k != "DOCKER_CONFIG"
    }
    env["DOCKER_CONFIG"] = str(docker_config)
    env.update(extra or {})
    return env


def run_cli(
    root: Path, *args: str, env: dict[str, str], timeout: float = RUN_LIMIT
) -> subprocess.CompletedProcess[str]:
    """`python -m imagectl -f <root>/imagectl.yaml ARGS` in `root`; a hang is a failure."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "imagectl", "-f", str(root / "imagectl.yaml"), *args],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"imagectl {' '.join(args)} still running after {timeout:g}s: {exc}")


# ---------------------------------------------------------------------------- cases


def _pad_past_limit(work: Path, repo: Path) -> None:
    manifest = repo / "imagectl.yaml"
    size = manifest.stat().st_size
    line = "# " + "x" * 98 + "\n"
    with manifest.open("a") as handle:
        handle.write(line * ((MAX_MANIFEST_BYTES - size) // len(line) + 10))


def _context_symlink(work: Path, repo: Path) -> None:
    outside = work / "outside-context"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (repo / "images").mkdir(exist_ok=True)
    (repo / "images" / "base").symlink_to(outside, target_is_directory=True)


def _dockerfile_symlink(work: Path, repo: Path) -> None:
    outside = work / "private.Dockerfile"
    outside.write_text("FROM scratch\n")
    (repo / "images" / "base" / "Dockerfile").symlink_to(outside)


# Inputs that cannot be committed as data: made in the copy, before the run.
SETUP: dict[str, Callable[[Path, Path], None]] = {
    "huge-file": _pad_past_limit,
    "context-symlink-outside": _context_symlink,
    "dockerfile-symlink-outside": _dockerfile_symlink,
}


@dataclass(frozen=True)
class Case:
    name: str
    injected: str
    expected: tuple[str, ...]
    is_lock: bool


def load_case(name: str, host: str) -> Case:
    lines = (BAD / name / "expected.txt").read_text(encoding="utf-8").splitlines()
    comments = [line[1:].strip() for line in lines if line.startswith("#")]
    expected = tuple(
        line.replace(PLACEHOLDER, host) for line in lines if line and not line.startswith("#")
    )
    assert expected, f"{name}/expected.txt names no expected message"
    return Case(
        name=name,
        injected=comments[0] if comments else name,
        expected=expected,
        is_lock=(BAD / name / "imagectl.lock").is_file(),
    )


def materialize(name: str, work: Path, host: str) -> Path:
    """Copy case `name` into `work/repo` (its `outside/` into `work`); returns the repo."""
    source = BAD / name
    repo = work / "repo"
    repo.mkdir(parents=True)
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if rel == Path("expected.txt"):
            continue
        target = work / rel.relative_to("outside") if rel.parts[0] == "outside" else repo / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes().replace(PLACEHOLDER.encode(), host.encode()))
    setup = SETUP.get(name)
    if setup is not None:
        setup(work, repo)
    return repo


@dataclass
class Outcome:
    command: str
    run: subprocess.CompletedProcess[str]
    changes: list[str]


def attempt(name: str, command: str, work: Path, host: str, docker_config: Path) -> Outcome:
    repo = materialize(name, work, host)
    before = snapshot(work)
    run = run_cli(repo, command, env=cli_env(docker_config))
    return Outcome(command, run, snapshot_diff(before, snapshot(work)))


def check(case: Case, outcome: Outcome) -> list[str]:
    """What went wrong with one command on one case (empty: rejected cleanly)."""
    run, command = outcome.run, outcome.command
    output = run.stdout + run.stderr
    wrong: list[str] = []
    passes = case.is_lock and command == "validate"
    if run.returncode != (0 if passes else 1):
        wrong.append(f"{command}: exit {run.returncode}, expected {0 if passes else 1}")
    if "Traceback" in output:
        wrong.append(f"{command}: traceback")
    if not passes:
        wrong += [f"{command}: stderr lacks {line!r}" for line in case.expected
                  if line not in run.stderr]  # fmt: skip
    changes = outcome.changes
    if passes:  # a valid manifest: validate may store its cache, nothing else
        changes = [c for c in changes if c.removeprefix("created ") not in MANIFEST_CACHE]
    wrong += [f"{command}: {change}" for change in changes]
    if wrong:
        wrong.append(f"{command} stderr: {run.stderr[-1500:]}")
    return wrong


def test_corpus_is_large_and_well_formed() -> None:
    assert len(CASES) >= 40
    assert sum(1 for name in CASES if (BAD / name / "imagectl.lock").is_file()) >= 4
    for name in CASES:
        assert (BAD / name / "imagectl.yaml").is_file(), name
    for name in SETUP:
        assert name in CASES


@dataclass
class CaseRuns:
    """The three commands of one case, running, and the server they must not reach."""

    case: Case
    registry: CountingRegistry
    outcomes: list[Future[Outcome]]


@pytest.fixture(scope="module")
def corpus_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CaseRuns]]:
    """Start every selected case's runs at once, so the CPUs stay busy (each run is
    mostly interpreter start-up); each test then waits for its own three."""
    selected = sorted(
        {
            item.callspec.params["name"]
            for item in request.session.items
            if getattr(item, "originalname", None) == "test_bad_input_is_rejected_cleanly"
            and hasattr(item, "callspec")
        }
    )
    servers = [counting_server() for _ in selected]
    pool = ThreadPoolExecutor((os.cpu_count() or 2) + 1)
    runs: dict[str, CaseRuns] = {}
    try:
        for name, server in zip(selected, servers, strict=True):
            host = server.host
            work = tmp_path_factory.mktemp(name)
            docker_config = work / "docker-config"
            docker_config.mkdir()
            futures = [
                pool.submit(attempt, name, command, work / command, host, docker_config)
                for command in COMMANDS
            ]
            runs[name] = CaseRuns(load_case(name, host), server, futures)
        yield runs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for server in servers:
            server.close()


MARKUP_BUG = (
    "imagectl/cli.py report() (lines 340 and 345) prints error text as rich markup: a '[/…]' "
    "in a message (the platform hint 'os/arch[/variant]', a key named '[/bold]') raises "
    "MarkupError, a traceback; escape the text (rich.markup.escape)"
)
KNOWN_BUGS: dict[str, str] = {}  # fixed: cli.report() escapes markup


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n]))
        if n in KNOWN_BUGS
        else n
        for n in CASES
    ],
)
def test_bad_input_is_rejected_cleanly(name: str, corpus_runs: dict[str, CaseRuns]) -> None:
    runs = corpus_runs[name]
    case = runs.case
    with result("bad-input", name, case.injected) as rec:
        rec.count = 1
        outcomes = [future.result() for future in runs.outcomes]
        wrong = [problem for outcome in outcomes for problem in check(case, outcome)]
        if runs.registry.connections:
            wrong.append(
                f"{runs.registry.connections} registry connection(s): {runs.registry.requests}"
            )
        assert not wrong, "\n".join(wrong)
        failing = [o.command for o in outcomes if o.run.returncode == 1]
        rec.observed = (
            f"{'/'.join(failing)}: exit 1, {case.expected[0]!r}; no traceback, nothing "
            "written, 0 registry requests"
            + ("; validate passes (it does not read the lock)" if case.is_lock else "")
        )


def test_bad_input_case_copy_is_faithful(tmp_path: Path) -> None:
    """The harness itself: placeholders replaced, `outside/` beside the repo, setup run."""
    repo = materialize("include-parent-dir", tmp_path / "a", "127.0.0.1:1")
    assert (tmp_path / "a" / "shared.yaml").is_file()
    assert "LOOPBACK" not in (repo / "imagectl.yaml").read_text()
    repo = materialize("context-symlink-outside", tmp_path / "b", "127.0.0.1:1")
    assert (repo / "images" / "base").is_symlink()
    repo = materialize("huge-file", tmp_path / "c", "127.0.0.1:1")
    assert (repo / "imagectl.yaml").stat().st_size > MAX_MANIFEST_BYTES
    before = snapshot(tmp_path)
    (repo / "new").write_text("x")
    assert snapshot_diff(before, snapshot(tmp_path)) == ["created c/repo/new"]
