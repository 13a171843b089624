"""The imagectl error tree.

Every failure a user can cause or meet is one of these; the CLI turns them into
a clean message and an exit code, never a traceback::

    ImagectlError                 exit 1
    ├── ManifestError             one or more located problems (file:line:col: key.path: message)
    ├── LockFileError             imagectl.lock unreadable or of an unknown format
    ├── PlanError                 a plan cannot be made or applied (lowered version, stale plan)
    ├── RegistryError             the registry refused, failed or lied (digest mismatch)
    │   └── AuthError             credentials missing or refused
    ├── BuildError                a builder failed or is not installed
    ├── GitOpsError               git commit / push failed
    └── LockHeldError             another apply holds the repository lock
    UsageError                    exit 2: the command line itself is wrong

`ExitCode` is the one table of exit codes (docs/design.md section 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code imagectl returns; commands and the daemon map results to these."""

    OK = 0  # success; `plan --detailed-exitcode`: nothing to do
    FAILED = 1  # an error, or an image that failed (or was skipped) in apply
    USAGE = 2  # the command line is wrong
    CHANGES = 2  # `plan --detailed-exitcode`: there are changes; `bases check`: behind
    INTERRUPTED = 130  # apply (or the daemon) stopped by SIGINT/SIGTERM


@dataclass(frozen=True, order=True)
class Location:
    """A position in a source file; line and column are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        if self.col <= 0:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One located problem in a manifest, lock or Dockerfile."""

    location: Location
    message: str
    key_path: str = ""
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: "
        if self.key_path:
            text += f"{self.key_path}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ImagectlError(Exception):
    """Base of every expected imagectl failure."""

    exit_code: int = ExitCode.FAILED


class UsageError(ImagectlError):
    """The command line is wrong (exit code 2)."""

    exit_code = ExitCode.USAGE


class ManifestError(ImagectlError):
    """The manifest is invalid; carries every problem found, sorted by location."""

    def __init__(self, problems: list[Problem]) -> None:
        # one problem found from many images (a shared registry) is reported once
        self.problems = sorted(set(problems), key=lambda p: (p.location, p.key_path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class LockFileError(ImagectlError):
    """imagectl.lock cannot be read or has an unknown format."""


class PlanError(ImagectlError):
    """A plan cannot be made, or a saved plan cannot be applied."""


class RegistryError(ImagectlError):
    """A registry request failed; the message names registry, reference and server reply."""


class RegistryUnreachable(RegistryError):
    """No answer from the registry (connection refused, reset, timed out, TLS failed)."""


class AuthError(RegistryError):
    """Credentials are missing or were refused by the registry."""


class BuildError(ImagectlError):
    """A build failed or the builder is not available."""


class GitOpsError(ImagectlError):
    """Committing or pushing the record to git failed."""


class LockHeldError(ImagectlError):
    """Another apply holds the repository lock."""
