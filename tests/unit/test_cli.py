"""The command line's surface: version, help, completion, choice errors and start-up imports."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imagectl
from imagectl import cli, entry

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m imagectl ARGS` (the console script's entry point) in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "imagectl", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_version_is_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"imagectl {imagectl.__version__}\n"
    assert imagectl.__version__ == importlib.metadata.version("imagectl")


def test_version_after_a_file_option_goes_through_the_framework() -> None:
    result = run_cli("-f", "examples/imagectl.yaml", "--version")
    assert (result.returncode, result.stdout) == (0, f"imagectl {imagectl.__version__}\n")


def test_committed_help_text_is_what_the_command_tree_renders() -> None:
    assert entry.HELP_FILE.read_text() == cli.render_help(), (
        "imagectl/help.txt is stale: regenerate it with "
        """.venv/bin/python -c 'from imagectl.cli import render_help; """
        """open("imagectl/help.txt", "w").write(render_help())'"""
    )


def test_help_lists_every_command_and_no_type_column() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("validate", "graph", "init", "plan", "apply", "status", "lint", "bases"):
        assert f"\n  {command} " in result.stdout
    assert "--version" in result.stdout and "--install-completion" in result.stdout
    assert "<bool>" not in result.stdout


@pytest.mark.parametrize(
    "command", ["plan", "apply", "graph", "lint", "status", "prune", "init", "daemon"]
)
def test_command_help_has_no_type_placeholders(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "-h, --help" in result.stdout
    assert "<bool>" not in result.stdout and "<list[" not in result.stdout
    assert "<str>" not in result.stdout


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        ("plan", "table, json or github-matrix"),
        ("graph", "tree, mermaid, dot or json"),
        ("lint", "text, json or github"),
    ],
)
def test_a_bad_choice_names_every_choice_in_plain_words(command: str, choices: str) -> None:
    result = run_cli("-f", "examples/imagectl.yaml", command, "--format", "bogus")
    assert result.returncode == 2
    assert "Value error" not in result.stderr
    assert f"--format 'bogus' is not a choice: use {choices}" in result.stderr


def test_choice_accepts_each_value() -> None:
    assert cli.choice("--format", "github-matrix", cli.PlanFormat) is cli.PlanFormat.github_matrix


def test_shell_completion_completes_commands_and_choices() -> None:
    env = {"_IMAGECTL_COMPLETE": "complete_bash", "COMP_WORDS": "imagectl pl", "COMP_CWORD": "1"}
    assert run_cli(env=env).stdout.split() == ["plan"]
    env |= {"COMP_WORDS": "imagectl plan --format ", "COMP_CWORD": "3"}
    assert run_cli(env=env).stdout.split() == ["table", "json", "github-matrix"]
    script = run_cli("--show-completion", "bash")
    assert script.returncode == 0 and "_IMAGECTL_COMPLETE=complete_bash" in script.stdout


def test_entry_imports_no_framework() -> None:
    loaded = imported_after("import imagectl.entry")
    assert not {"typer", "click", "rich", "pydantic"} & loaded


HEAVY = ("rich", "pydantic", "httpx", "git", "ruamel", "imagectl.manifest", "imagectl.registry")


def test_cli_module_imports_only_the_framework() -> None:
    loaded = imported_after("import imagectl.cli")
    assert "typer" in loaded
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


def test_plan_path_leaves_out_apply_builders_and_git() -> None:
    """What `plan --json` imports: the commands, pipeline, registry and plan views."""
    loaded = imported_after(
        "import imagectl.cli, imagectl.commands, imagectl.registry.settings, imagectl.planfile\n"
        "import imagectl.manifest.loader, imagectl.output.plan_view"
    )
    assert "imagectl.registry" in loaded  # the plan path does what it needs
    unwanted = ("imagectl.apply", "imagectl.builders", "imagectl.gitops", "git", "gitdb")
    prefixes = tuple(f"{u}." for u in unwanted)
    assert not [m for m in loaded if m in unwanted or m.startswith(prefixes)]
