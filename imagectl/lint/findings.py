"""Lint findings, the rule registry and the two ways to silence a rule.

A rule is declared once with `register` (id, severity, what it checks, the fix) and
produces `Finding`s. Rules are silenced per image (`lint: {ignore: [IC203]}` in the
manifest) or per instruction (a `# imagectl: ignore=IC203,IC204` comment on the line
directly above it in the Dockerfile).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from imagectl.lint.dockerfile import Dockerfile

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
RULE_ID_RE = re.compile(r"(?:IC\d{3}|DL\d{4}|SC\d{4})")
_IGNORE_RE = re.compile(r"imagectl:\s*ignore\s*=\s*([A-Za-z0-9_,\s]+)", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Finding:
    """One finding: where (`file:line`, relative to the manifest directory), what and the fix.

    Attributes:
        file: the file the finding is in, relative to the manifest's directory.
        line: 1-based line (0 when the finding has no line).
        rule: the rule id (`IC203`, or hadolint's `DL3008` / `SC2086`).
        severity: `error`, `warning` or `info`.
        message: what is wrong, in one line.
        fix: how to fix it, in one line.
        source: `imagectl` or `hadolint`.
    """

    file: str
    line: int
    rule: str
    severity: Severity
    message: str
    fix: str
    source: str = "imagectl"

    def to_json(self) -> dict[str, object]:
        """The finding as a JSON object."""
        return {
            "id": self.rule,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
            "source": self.source,
        }


@dataclass(frozen=True)
class Rule:
    """A lint rule of imagectl."""

    id: str
    severity: Severity
    title: str
    fix: str

    def at(self, file: str, line: int, message: str = "", fix: str = "") -> Finding:
        """A finding of this rule; the message and fix default to the rule's own."""
        return Finding(file, line, self.id, self.severity, message or self.title, fix or self.fix)


RULES: dict[str, Rule] = {}


def register(rule_id: str, severity: Severity, title: str, fix: str) -> Rule:
    """Declare a rule; ids are unique."""
    if rule_id in RULES:
        raise ValueError(f"lint rule {rule_id} is declared twice")
    RULES[rule_id] = Rule(rule_id, severity, title, fix)
    return RULES[rule_id]


def parse_ignore_comment(comment: str) -> frozenset[str]:
    """The rule ids named by `imagectl: ignore=IC203,IC204` in a comment (without '#')."""
    match = _IGNORE_RE.search(comment)
    if match is None:
        return frozenset()
    return frozenset(p.strip().upper() for p in match.group(1).split(",") if p.strip())


def line_ignores(dockerfile: Dockerfile) -> dict[int, frozenset[str]]:
    """Rule ids silenced per instruction line by the comment lines directly above it."""
    result: dict[int, frozenset[str]] = {}
    for instruction in dockerfile.instructions:
        ids = frozenset().union(*(parse_ignore_comment(c) for c in instruction.comments))
        if ids:
            result[instruction.line] = ids
    return result


Owned = tuple[Finding, tuple[str, ...]]


def keep_unignored(owned: Iterable[Owned], ignores: Mapping[str, Collection[str]]) -> list[Finding]:
    """Findings that at least one of their images does not ignore, without duplicates.

    Args:
        owned: each finding with the images it concerns (none: it concerns the manifest).
        ignores: per image, the rule ids it ignores (`lint: {ignore: [...]}`).

    Returns:
        The surviving findings, sorted by file, line and rule.
    """
    kept: set[Finding] = set()
    for finding, images in owned:
        if not images or any(finding.rule not in ignores.get(i, ()) for i in images):
            kept.add(finding)
    return sorted(kept)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """The number of findings per severity (every severity present, zeros included)."""
    result: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        result[finding.severity] += 1
    return result
