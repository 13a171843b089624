"""The one subprocess wrapper of imagectl.

Every external program (docker, buildah, git helpers) runs through `run`: argv
only (never a shell), output captured and optionally streamed to a log file,
secret values replaced by ``***`` in everything returned or written. A non-zero
exit status is data, not an exception: the caller decides what it means.

Each program runs in a session of its own. When it must stop (its `timeout`, an
exception, a second SIGTERM through `die_of`), `kill_tree` ends it together with
every process it started, including those in other sessions (container runtimes
put RUN steps there), so that no build outlives imagectl.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imagectl.errors import ImagectlError

REDACTED = "***"
TERM_GRACE = 10.0  # seconds a timed-out program gets after SIGTERM, before SIGKILL
_FREEZE_ROUNDS = 20
_SETTLE = 10.0  # seconds to watch killed processes disappear


class ExecutableNotFound(ImagectlError, FileNotFoundError):
    """The program to run is not installed (not found on PATH)."""

    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(f"executable {program!r} not found (is it installed and on PATH?)")

    def __str__(self) -> str:
        return str(self.args[0])


class CommandTimeout(ImagectlError):
    """A command ran longer than its timeout and was killed with everything it started.

    Attributes:
        command: the command line (redacted).
        timeout: the limit, in seconds.
        survivors: pids that still ran after SIGKILL (normally none).
    """

    def __init__(self, command: str, timeout: float, survivors: Sequence[int] = ()) -> None:
        self.command = command
        self.timeout = timeout
        self.survivors = tuple(survivors)
        text = f"{command}: still running after {timeout:g}s, killed"
        if survivors:
            text += f"; still running after SIGKILL: pid {', '.join(map(str, survivors))}"
        super().__init__(text)


@dataclass(frozen=True)
class ProcResult:
    """What a finished command returned; every text field is already redacted."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        """stdout and stderr together, for error messages."""
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)


MIN_SECRET_LINE = 4  # shorter lines of a multi-line secret are too common to replace


def _patterns(secrets: Sequence[str]) -> list[str]:
    """What to replace for `secrets`: each whole value, and each line of 4+ characters.

    Output is redacted line by line as it streams, so a multi-line secret (a PEM key)
    is caught one line at a time too, down to its short last line of base64.
    """
    found: set[str] = set()
    for secret in secrets:
        if not secret.strip():
            continue  # replacing "" or whitespace would mangle every line
        found.update((secret, secret.strip()))
        lines = (line.strip() for line in secret.splitlines())
        found.update(line for line in lines if len(line) >= MIN_SECRET_LINE)
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every non-blank secret value, and each of its lines of 4+ characters, with ``***``.

    Args:
        text: the text to clean.
        secrets: secret values; blank ones are ignored, longer patterns are replaced first.

    Returns:
        The text with no secret value left in it.
    """
    for pattern in _patterns(secrets):
        text = text.replace(pattern, REDACTED)
    return text


def _resolve(program: str, env: Mapping[str, str] | None) -> str:
    if os.sep in program:
        if os.access(program, os.X_OK) and not os.path.isdir(program):
            return program
        raise ExecutableNotFound(program)
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(program, path=path)
    if found is None:
        raise ExecutableNotFound(program)
    return found


class _Sink:
    """Collects one stream and mirrors it, redacted, line by line into the log."""

    def __init__(self, log: IO[bytes] | None, lock: threading.Lock, secrets: Sequence[str]):
        self.log = log
        self.lock = lock
        self.secrets = secrets
        self.chunks: list[bytes] = []

    def pump(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.chunks.append(line)
            if self.log is not None:
                text = redact(line.decode("utf-8", errors="replace"), self.secrets)
                with self.lock:
                    self.log.write(text.encode("utf-8"))
                    self.log.flush()
        stream.close()

    def text(self) -> str:
        return redact(b"".join(self.chunks).decode("utf-8", errors="replace"), self.secrets)


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except BrokenPipeError:
        pass  # the program exited without reading all of its input; its exit code says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            stream.close()


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, from the state on.

    Index 0 is the state (``Z``: zombie), 1 the parent pid, 19 the start time.
    None when the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()  # the name may hold spaces and parentheses


def _identity(pid: int) -> bytes | None:
    """The start time of a live process (pid and start time name it uniquely); None: gone."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 and fields[0] != b"Z" else None


def descendants(*pids: int) -> dict[int, bytes]:
    """The live processes below `pids` (pid -> start time), whatever their session or group.

    Container runtimes (runc, under buildah's oci isolation) start a build's RUN
    processes in sessions of their own: killing the build's process group alone
    would leave them running, reparented to PID 1.
    """
    children: dict[int, list[tuple[int, bytes]]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            fields = _stat(entry.name) if entry.name.isdigit() else None
            if fields and len(fields) > 19 and fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: dict[int, bytes] = {}
    todo = list(pids)
    while todo:
        for child, start in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def _signal_all(tree: Mapping[int, bytes], sig: signal.Signals) -> None:
    """Send `sig` to each process of `tree` that is still the process it was."""
    for pid, start in tree.items():
        if _identity(pid) == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _freeze(root: int, tree: dict[int, bytes]) -> None:
    """SIGSTOP `tree` and everything below it, until no new process shows up.

    A stopped process can neither fork nor exit, so once a round finds nothing new
    the tree is complete and nothing can escape (to PID 1) before it is killed.
    """
    roots = {root, *tree}
    for _ in range(_FREEZE_ROUNDS):
        found = descendants(*roots)
        new = {pid: start for pid, start in found.items() if tree.get(pid) != start}
        _signal_all(new, signal.SIGSTOP)
        tree.update(new)
        if not new:
            return
        roots = set(new)


def kill_tree(proc: subprocess.Popen[bytes], *, grace: float = 0.0) -> list[int]:
    """End a program, its process group and every process it started; reap the program.

    With `grace`, the group first gets SIGTERM and up to `grace` seconds to stop by
    itself (a `docker build` client then asks the daemon to cancel the build). Then
    everything left, including processes in sessions of their own and those whose
    parent has exited meanwhile, is stopped and killed with SIGKILL.

    Returns:
        Pids of processes that still run after the kill (normally none).
    """
    tree = descendants(proc.pid)
    if proc.poll() is None:
        start = _identity(proc.pid)
        if start is not None:
            tree[proc.pid] = start
    if grace > 0 and proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGSTOP)
    _signal_all(tree, signal.SIGSTOP)
    _freeze(proc.pid, tree)
    _signal_group(proc.pid, signal.SIGKILL)
    _signal_all(tree, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_SETTLE)  # a process stuck in the kernel dies when it leaves it
    deadline = time.monotonic() + _SETTLE
    left = [pid for pid, start in tree.items() if _identity(pid) == start]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)  # SIGKILL takes effect asynchronously: watch /proc until it has
        left = [pid for pid in left if _identity(pid) == tree[pid]]
    return left


_RUNNING: dict[int, subprocess.Popen[bytes]] = {}  # pid -> program started by run()


def kill_running() -> None:
    """Kill every program that `run` started and that still runs, with all it started.

    For a second SIGTERM/SIGINT: imagectl is about to die of the signal, and the
    builds run in sessions of their own (a terminal's Ctrl-C must not reach them),
    so without this they would run on, reparented to PID 1.
    """
    for proc in list(_RUNNING.values()):
        with contextlib.suppress(OSError, ChildProcessError):
            kill_tree(proc)


def die_of(signum: int) -> None:
    """Kill every running program (`kill_running`), then die of `signum` (default action).

    The default action is restored first: should the killing hang (a process stuck in
    the kernel), the next such signal ends imagectl at once.
    """
    signal.signal(signum, signal.SIG_DFL)
    kill_running()
    signal.raise_signal(signum)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
    grace: float = TERM_GRACE,
    input: bytes | None = None,
) -> ProcResult:
    """Run a program to completion and return its exit code and redacted output.

    Args:
        argv: the program and its arguments; never interpreted by a shell.
        env: the complete environment of the program (default: this process's).
        cwd: working directory of the program.
        log_path: when given, the command line and its output are appended to this
            file as they arrive (redacted).
        secrets: values that must never appear in the result or the log.
        timeout: seconds after which the program is ended with everything it started
            (`kill_tree`): SIGTERM to its process group, `grace` seconds, then SIGKILL.
        grace: seconds between SIGTERM and SIGKILL when the timeout expires.
        input: bytes written to the program's stdin (default: no stdin).

    Returns:
        The exit code and the redacted stdout and stderr; a non-zero exit is not an error.

    Raises:
        ExecutableNotFound: the program is not installed.
        CommandTimeout: the program ran longer than `timeout` (it has been killed).
    """
    if not argv:
        raise ValueError("run() needs a program to run")
    program = _resolve(argv[0], env)
    shown = redact(shlex.join(argv), secrets)
    lock = threading.Lock()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab") if log_path is not None else None
    try:
        if log is not None:
            log.write(f"$ {shown}\n".encode())
            log.flush()
        out, err = _Sink(log, lock, secrets), _Sink(log, lock, secrets)
        proc = subprocess.Popen(
            [program, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout can kill the helpers it spawns too
        )
        assert proc.stdout is not None and proc.stderr is not None
        threads = [
            threading.Thread(target=out.pump, args=(proc.stdout,), daemon=True),
            threading.Thread(target=err.pump, args=(proc.stderr,), daemon=True),
        ]
        if input is not None:
            assert proc.stdin is not None
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True))
        for thread in threads:
            thread.start()
        _RUNNING[proc.pid] = proc
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            assert timeout is not None
            error = CommandTimeout(shown, timeout, kill_tree(proc, grace=grace))
            if log is not None:
                log.write(f"# {error}\n".encode())
            raise error from None
        except BaseException:
            kill_tree(proc)  # KeyboardInterrupt: never leave a build running behind us
            raise
        finally:
            _RUNNING.pop(proc.pid, None)
        for thread in threads:
            thread.join()
        if log is not None and returncode != 0:
            log.write(f"# exit status {returncode}\n".encode())
        return ProcResult(
            argv=tuple(redact(arg, secrets) for arg in argv),
            returncode=returncode,
            stdout=out.text(),
            stderr=err.text(),
        )
    finally:
        if log is not None:
            log.close()
