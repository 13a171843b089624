"""Render lint findings as text, JSON or GitHub Actions annotations.

`text`: one `path:line: severity id: message (fix: …)` line per finding, then a summary.
`json`: `{"format": 1, "findings": [...], "counts": {...}}`.
`github`: `::error file=…,line=…::id: message (fix: …)` workflow commands (warnings
as `::warning`, info as `::notice`), then the summary as a plain log line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from imagectl.errors import UsageError
from imagectl.lint.findings import SEVERITIES, Finding, counts
from imagectl.output.github import annotation

FORMATS = ("text", "json", "github")
_GITHUB_LEVELS = {"error": "error", "warning": "warning", "info": "notice"}


def _where(finding: Finding) -> str:
    return f"{finding.file}:{finding.line}" if finding.line > 0 else finding.file


def _plural(count: int, word: str) -> str:
    if word == "info":
        return f"{count} info"
    return f"{count} {word}" + ("" if count == 1 else "s")


def summary(findings: Sequence[Finding]) -> str:
    """One line: how many findings of each severity, in how many files."""
    if not findings:
        return "lint: no findings"
    by_severity = counts(findings)
    parts = [_plural(by_severity[s], s) for s in SEVERITIES if by_severity[s]]
    files = len({f.file for f in findings})
    return f"lint: {', '.join(parts)} in {_plural(files, 'file')}"


def render_text(findings: Sequence[Finding]) -> str:
    """One line per finding, then the summary line."""
    lines = [f"{_where(f)}: {f.severity} {f.rule}: {f.message} (fix: {f.fix})" for f in findings]
    return "\n".join([*lines, summary(findings)]) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    """The findings and their counts as a JSON document."""
    document = {
        "format": 1,
        "findings": [f.to_json() for f in findings],
        "counts": counts(findings),
    }
    return json.dumps(document, indent=2) + "\n"


def render_github(findings: Sequence[Finding]) -> str:
    """One GitHub Actions annotation per finding, then the summary line."""
    lines = [
        annotation(
            _GITHUB_LEVELS[f.severity], f"{f.rule}: {f.message} (fix: {f.fix})", f.file, f.line
        )
        for f in findings
    ]
    return "\n".join([*lines, summary(findings)]) + "\n"


def render(findings: Sequence[Finding], format: str) -> str:
    """Render sorted findings in `format` (text, json or github).

    Raises:
        UsageError: `format` is not one of them.
    """
    if format == "text":
        return render_text(findings)
    if format == "json":
        return render_json(findings)
    if format == "github":
        return render_github(findings)
    raise UsageError(f"unknown lint format {format!r}: use one of {', '.join(FORMATS)}")
