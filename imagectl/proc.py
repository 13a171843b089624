"""The one subprocess wrapper of imagectl.

Every external program (docker, buildah, git helpers) runs through `run`: argv
only (never a shell), output captured and optionally streamed to a log file,
secret values replaced by ``***`` in everything returned or written. A non-zero
exit status is data, not an exception: the caller decides what it means.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imagectl.errors import ImagectlError

REDACTED = "***"


class ExecutableNotFound(ImagectlError, FileNotFoundError):
    """The program to run is not installed (not found on PATH)."""

    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(f"executable {program!r} not found (is it installed and on PATH?)")

    def __str__(self) -> str:
        return str(self.args[0])


class CommandTimeout(ImagectlError):
    """A command ran longer than its timeout and was killed."""


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
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
        timeout: seconds after which the program (and its process group) is killed.
        input: bytes written to the program's stdin (default: no stdin).

    Returns:
        The exit code and the redacted stdout and stderr; a non-zero exit is not an error.

    Raises:
        ExecutableNotFound: the program is not installed.
        CommandTimeout: the program ran longer than `timeout`.
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
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(f"{shown}: still running after {timeout:g}s, killed") from None
        except BaseException:
            _kill_group(proc)  # KeyboardInterrupt: never leave a build running behind us
            raise
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
