from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imagectl.errors import ImagectlError
from imagectl.proc import CommandTimeout, ExecutableNotFound, redact, run

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
