from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imagectl.errors import ImagectlError
from imagectl.proc import (
    CommandTimeout,
    ExecutableNotFound,
    ProcResult,
    kill_running,
    redact,
    run,
)

PY = sys.executable


def test_redact_replaces_every_secret_longest_first() -> None:
    text = "token=abc123 and abc123456 again abc123"
    assert redact(text, ["abc123", "abc123456"]) == "token=*** and *** again ***"


def test_redact_ignores_blank_secrets() -> None:
    assert redact("a b c", ["", "   "]) == "a b c"


def test_redact_catches_lines_of_a_multiline_secret() -> None:
    secret = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----"
    assert "QUJDREVGR0hJSktMTU5PUA" not in redact("line: QUJDREVGR0hJSktMTU5PUA==", [secret])


PEM = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUA==\nZm9vYmFy\nq8Zx\n-----END TEST KEY-----\n"


@pytest.mark.parametrize("line", ["QUJDREVGR0hJSktMTU5PUA==", "Zm9vYmFy", "q8Zx"])
def test_redact_catches_every_line_of_four_or_more_characters(line: str) -> None:
    assert redact(f"#7 0.31 {line}\n", [PEM]) == "#7 0.31 ***\n"


def test_redact_replaces_the_whole_value_as_one() -> None:
    assert redact(f"key: {PEM}.", [PEM]) == "key: ***."
    assert redact("key=" + PEM.strip() + ";", [PEM]) == "key=***;"


def test_redact_leaves_lines_shorter_than_four_characters() -> None:
    assert redact("abc and x", ["x\nabc\nlong-secret"]) == "abc and x"


def test_run_redacts_a_pem_streamed_line_by_line(tmp_path: Path) -> None:
    secret = tmp_path / "key.pem"
    secret.write_text(PEM)
    log = tmp_path / "log"
    result = run(["cat", str(secret)], log_path=log, secrets=[PEM])
    for text in (result.stdout, log.read_text()):
        assert not any(line in text for line in ("Zm9vYmFy", "q8Zx", "QUJDREVG")), text
    assert result.stdout == "***"  # collected whole: the whole value at once
    assert log.read_text().count("***") == 5  # streamed: every line of 4+ characters


def test_run_returns_output_and_nonzero_exit_without_raising() -> None:
    result = run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"])
    assert result.returncode == 3
    assert not result.ok
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_run_redacts_result_and_streams_redacted_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("earlier run\n")
    secret = "s3cr3t-canary"
    code = "import sys; print('a', sys.argv[1]); print('b', sys.stdin.read(), file=sys.stderr)"
    result = run([PY, "-c", code, secret], log_path=log, secrets=[secret], input=secret.encode())
    assert result.ok
    assert secret not in result.stdout + result.stderr + " ".join(result.argv)
    assert "a ***" in result.stdout
    assert "b ***" in result.stderr
    text = log.read_text()
    assert text.startswith("earlier run\n")  # appended, not truncated
    assert secret not in text
    assert "a ***" in text and "b ***" in text
    assert "$ " in text  # the command line is logged (redacted)


def test_missing_executable_names_the_program(tmp_path: Path) -> None:
    with pytest.raises(ExecutableNotFound) as info:
        run(["imagectl-no-such-tool", "--version"], env={"PATH": str(tmp_path)})
    assert "imagectl-no-such-tool" in str(info.value)
    assert info.value.program == "imagectl-no-such-tool"
    assert isinstance(info.value, ImagectlError)
    assert isinstance(info.value, FileNotFoundError)


def test_missing_executable_by_path(tmp_path: Path) -> None:
    with pytest.raises(ExecutableNotFound, match="nothing-here"):
        run([str(tmp_path / "nothing-here")])


def test_env_and_cwd_are_passed(tmp_path: Path) -> None:
    code = "import os; print(os.environ['IMAGECTL_X'], os.getcwd())"
    result = run([PY, "-c", code], env={"IMAGECTL_X": "42", "PATH": "/usr/bin"}, cwd=tmp_path)
    assert result.stdout.split() == ["42", str(tmp_path)]


def test_timeout_kills_and_raises() -> None:
    with pytest.raises(CommandTimeout, match=r"0\.2s"):
        run([PY, "-c", "import time; time.sleep(30)"], timeout=0.2)


# A program that starts a helper in a session of its own (as runc does for a RUN step
# under buildah's oci isolation), reports both pids through a FIFO, then hangs.
TREE = """\
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                          start_new_session=True)
with open(sys.argv[1], "w") as fifo:
    fifo.write(f"{os.getpid()} {helper.pid}\\n")
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """The process runs (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


def start_tree(tmp_path: Path, **kwargs: object) -> tuple[threading.Thread, list[object], int]:
    """run(TREE) in a thread; returns the thread, its outcome list, and the helper's pid."""
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(run([PY, "-c", TREE, str(fifo)], **kwargs))  # type: ignore[arg-type]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    with fifo.open() as reader:  # blocks until the program has started its helper
        program, helper = (int(word) for word in reader.read().split())
    assert alive(program) and alive(helper)
    assert os.getsid(helper) != os.getsid(program)  # out of the program's process group
    return thread, outcome, helper


def test_timeout_kills_helpers_in_other_sessions_too(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    thread, outcome, helper = start_tree(tmp_path, timeout=0.5, grace=0.1, log_path=log)
    thread.join(30)
    assert isinstance(outcome[0], CommandTimeout), outcome
    assert outcome[0].timeout == 0.5 and outcome[0].survivors == ()
    assert not alive(helper), "the helper in its own session outlived the timeout"
    assert "still running after 0.5s, killed" in log.read_text()


def test_kill_running_ends_every_program_and_its_helpers(tmp_path: Path) -> None:
    thread, outcome, helper = start_tree(tmp_path)
    kill_running()
    thread.join(30)
    result = outcome[0]
    assert isinstance(result, ProcResult) and result.returncode == -signal.SIGKILL
    assert not alive(helper)


def test_die_of_kills_running_builds_then_dies_of_the_signal(tmp_path: Path) -> None:
    """What a second SIGTERM does: no build process outlives imagectl."""
    fifo = tmp_path / "pids"
    script = (
        "import sys, threading\n"
        "from imagectl.proc import die_of, run\n"
        f"threading.Thread(target=run, args=([sys.executable, '-c', {TREE!r}, {str(fifo)!r}],)"
        ", daemon=True).start()\n"
        "sys.stdin.read()\n"  # the test says when
        "die_of(15)\n"
    )
    os.mkfifo(fifo)
    proc = subprocess.Popen([PY, "-c", script], stdin=subprocess.PIPE)
    with fifo.open() as reader:
        program, helper = (int(word) for word in reader.read().split())
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == -signal.SIGTERM
    assert not alive(program) and not alive(helper)
