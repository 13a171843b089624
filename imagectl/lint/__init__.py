"""Best-practice lint over manifests and Dockerfiles (`imagectl lint`); see docs/lint.md."""

from __future__ import annotations

from imagectl.lint.dockerfile import Dockerfile, Heredoc, Instruction, Stage, parse_dockerfile
from imagectl.lint.findings import RULES, Finding, Rule, Severity
from imagectl.lint.hadolint import HadolintError
from imagectl.lint.render import FORMATS, render
from imagectl.lint.run import lint_command, lint_manifest

__all__ = [
    "FORMATS",
    "RULES",
    "Dockerfile",
    "Finding",
    "HadolintError",
    "Heredoc",
    "Instruction",
    "Rule",
    "Severity",
    "Stage",
    "lint_command",
    "lint_manifest",
    "parse_dockerfile",
    "render",
]
