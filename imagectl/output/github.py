"""GitHub Actions integration: workflow commands, outputs and the step summary.

Active only under `GITHUB_ACTIONS=true`; every function is a no-op elsewhere.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from imagectl.errors import Problem


def active(env: Mapping[str, str] | None = None) -> bool:
    """True when running inside a GitHub Actions step."""
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, file: str = "", line: int = 0, col: int = 0) -> str:
    """One `::error file=…,line=…,col=…::message` workflow command."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
    if line > 0:
        props.append(f"line={line}")
    if col > 0:
        props.append(f"col={col}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def annotate_problems(problems: Iterable[Problem], level: str = "error") -> None:
    """Emit one annotation per located problem."""
    if not active():
        return
    for problem in problems:
        text = f"{problem.key_path}: {problem.message}" if problem.key_path else problem.message
        if problem.hint:
            text += f" ({problem.hint})"
        loc = problem.location
        print(annotation(level, text, loc.file, loc.line, loc.col), file=sys.stdout)


def annotate_error(message: str) -> None:
    """An unlocated error annotation."""
    if active():
        print(annotation("error", message), file=sys.stdout)


def mask(value: str) -> None:
    """Ask the runner to mask a secret value in all later log output."""
    if active() and value:
        print(f"::add-mask::{_escape_data(value)}", file=sys.stdout)


@contextmanager
def group(title: str) -> Iterator[None]:
    """A collapsible `::group::` block in the job log."""
    if not active():
        yield
        return
    print(f"::group::{_escape_data(title)}", file=sys.stdout, flush=True)
    try:
        yield
    finally:
        print("::endgroup::", file=sys.stdout, flush=True)


def set_outputs(values: Mapping[str, str]) -> None:
    """Append step outputs to `$GITHUB_OUTPUT` (multi-line safe, with a random delimiter)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not active() or not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in values.items():
            delimiter = f"imagectl_{uuid.uuid4().hex}"
            handle.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")


def write_summary(markdown: str) -> None:
    """Append Markdown to `$GITHUB_STEP_SUMMARY`."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not active() or not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown.rstrip("\n") + "\n")
