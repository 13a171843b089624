"""The command line: parse, call one function, render, exit code (DESIGN.md section 8)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagectl.errors import ImagectlError, ManifestError, UsageError
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.output import github

app = typer.Typer(
    name="imagectl",
    help="Declarative build pipeline for container images: plan and apply image families.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _console(stderr: bool = False) -> Console:
    # logs and CI captures are wider than the 80 columns rich assumes off a terminal
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal or os.environ.get("COLUMNS") else 120
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=stderr)


out = _console()
err = _console(stderr=True)


class State:
    """Options given before the command."""

    file: Path = Path("imagectl.yaml")


STATE = State()


@app.callback()
def _root(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="Root manifest file.", envvar="IMAGECTL_FILE"),
    ] = Path("imagectl.yaml"),
) -> None:
    STATE.file = file


def load(*, lock: bool = True) -> Manifest:
    """Load the manifest named by --file; with `lock`, check imagectl.lock first.

    The lock is read before the manifest so that a bad lock fails before
    anything (the manifest cache included) is written.
    """
    if lock:
        from imagectl.lockfile import read_lock

        read_lock(Path(os.path.abspath(STATE.file)).parent / "imagectl.lock")
    return load_manifest(STATE.file)


@app.command()
def validate() -> None:
    """Load and check every manifest file offline."""
    manifest = load(lock=False)
    count = len(manifest.images)
    out.print(
        f"{STATE.file}: ok: {count} image{'s' if count != 1 else ''}, "
        f"{len(manifest.bases)} external base{'s' if len(manifest.bases) != 1 else ''}, "
        f"{len(manifest.files)} file{'s' if len(manifest.files) != 1 else ''}"
    )


class GraphFormat(StrEnum):
    tree = "tree"
    mermaid = "mermaid"
    dot = "dot"
    json = "json"


@app.command()
def graph(
    format: Annotated[GraphFormat, typer.Option("--format", help="Output format.")] = (
        GraphFormat.tree
    ),
) -> None:
    """Show the family/base graph."""
    from imagectl.output import graph as render

    manifest = load(lock=False)
    if format is GraphFormat.tree:
        out.print(render.render_tree(manifest))
    elif format is GraphFormat.mermaid:
        sys.stdout.write(render.render_mermaid(manifest))
    elif format is GraphFormat.dot:
        sys.stdout.write(render.render_dot(manifest))
    else:
        sys.stdout.write(render.render_json(manifest))


@app.command()
def schema() -> None:
    """Print the JSON Schema of manifest files."""
    from imagectl.schema import schema_text

    sys.stdout.write(schema_text())


class PlanFormat(StrEnum):
    table = "table"
    json = "json"
    github_matrix = "github-matrix"


def parse_now(text: str | None) -> datetime:
    """`--now` (ISO 8601, UTC when no zone is given) or the real clock."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now {text!r}: expected ISO 8601, e.g. 2026-12-01T00:00:00Z") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


ForceOpt = Annotated[
    list[str] | None, typer.Option("--force", help="Rebuild this image (repeatable).")
]
OnlyOpt = Annotated[
    list[str] | None,
    typer.Option("--only", help="Only this image and what it needs (repeatable)."),
]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", help="Recover state from the registry, not just the lock.")
]
NowOpt = Annotated[str | None, typer.Option("--now", help="Plan as of this UTC time.")]


@app.command()
def plan(
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan for apply.")] = None,
    refresh: RefreshOpt = False,
    force: ForceOpt = None,
    only: OnlyOpt = None,
    now: NowOpt = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    format: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = (
        PlanFormat.table
    ),
) -> None:
    """Show what apply would rebuild, and why."""
    from imagectl import commands

    code = commands.plan_command(
        load(),
        out=out,
        refresh=refresh,
        force=force or [],
        only=only or [],
        now=parse_now(now),
        format="json" if json_out else str(format),
        console=out_console(),
    )
    if detailed_exitcode and code:
        raise typer.Exit(2)


@app.command()
def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (plan --out); applied exactly.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Images built at once (default: CPUs)."),
    ] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Build only; push nothing.")] = False,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not commit the lock.")] = False,
    git_push: Annotated[bool, typer.Option("--git-push", help="Push the commit.")] = False,
    force: ForceOpt = None,
    only: OnlyOpt = None,
    refresh: RefreshOpt = False,
    now: NowOpt = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help="Seconds to wait for another apply.")
    ] = 0.0,
    author: Annotated[
        str | None, typer.Option("--author", help='Commit author, "Name <email>".')
    ] = None,
) -> None:
    """Reconcile: plan, then build, push, verify, tag, record and commit."""
    from imagectl import commands

    if plan_file is not None and (force or only or refresh or now):
        raise UsageError("a saved plan is applied exactly: drop --force/--only/--refresh/--now")
    code = commands.apply_command(
        load(),
        plan_file=plan_file,
        jobs=jobs or (os.cpu_count() or 1),
        push=not no_push,
        git=not no_git,
        git_push=git_push,
        force=force or [],
        only=only or [],
        refresh=refresh,
        now=parse_now(now),
        lock_timeout=lock_timeout,
        author=commands.parse_author(author),
        console=out_console(),
    )
    raise typer.Exit(code)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    now: NowOpt = None,
) -> None:
    """Per image: recorded version, digest, base, age, and whether it is stale now."""
    from imagectl import commands

    commands.status_command(load(), now=parse_now(now), json_out=json_out, console=out_console())


class LintFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
def lint(
    hadolint: Annotated[
        bool, typer.Option("--hadolint", help="Also run hadolint and merge its findings.")
    ] = False,
    format: Annotated[LintFormat, typer.Option("--format", help="Output format.")] = (
        LintFormat.text
    ),
) -> None:
    """Best-practice rules over the manifests and Dockerfiles."""
    from imagectl.lint import lint_command

    raise typer.Exit(
        lint_command(load(lock=False), hadolint=hadolint, format=str(format), out=sys.stdout)
    )


@app.command()
def prune(
    keep: Annotated[int, typer.Option("--keep", min=1, help="Newest versions kept.")] = 10,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Only versions older than this (90d).")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Delete; default is a dry run.")] = False,
    now: NowOpt = None,
) -> None:
    """Registry retention per image; a dry run unless --apply."""
    from imagectl.prune import prune_command

    raise typer.Exit(
        prune_command(
            load(),
            keep=keep,
            older_than=older_than,
            apply=apply,
            now=parse_now(now),
            console=out_console(),
        )
    )


@app.command()
def verify(
    images: Annotated[
        list[str] | None, typer.Argument(help="Images (default: all recorded).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    format: Annotated[LintFormat, typer.Option("--format", help="Output format.")] = (
        LintFormat.text  # the same three: text, json, github annotations
    ),
    key: Annotated[
        Path | None, typer.Option("--key", help="PEM public key to verify with.")
    ] = None,
) -> None:
    """Check the registry against the lock: tags, signatures, provenance, SBOMs."""
    from imagectl.supply.verify import run_verify

    fmt = "json" if json_out else str(format)
    raise typer.Exit(run_verify(load(), images or [], key=key, format=fmt, console=out_console()))


@app.command()
def keygen(
    prefix: Annotated[Path, typer.Argument(help="Writes PREFIX.key and PREFIX.pub.")] = Path(
        "cosign"
    ),
    passphrase_env: Annotated[
        str, typer.Option("--passphrase-env", help="Variable holding the passphrase.")
    ] = "IMAGECTL_KEY_PASSPHRASE",
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Write a cosign-compatible signing key pair (encrypted private key, PEM public key)."""
    from imagectl.supply.keygen import keygen_command

    private, public = keygen_command(prefix, passphrase_env=passphrase_env, force=force)
    out_console().print(f"Private key written to {private}\nPublic key written to {public}")


bases_app = typer.Typer(help="Pinned external bases: check and update their digests.")
app.add_typer(bases_app, name="bases")


@bases_app.command("check")
def bases_check() -> None:
    """Exit 2 when a pinned base is behind its tag."""
    from imagectl.bases import bases_check_command

    raise typer.Exit(bases_check_command(load(), console=out_console()))


@bases_app.command("update")
def bases_update(
    commit: Annotated[bool, typer.Option("--commit", help="Commit the changed files.")] = False,
) -> None:
    """Rewrite pinned digests in place (comments and formatting kept)."""
    from imagectl.bases import bases_update_command

    raise typer.Exit(bases_update_command(load(), commit=commit, console=out_console()))


@app.command()
def daemon(
    interval: Annotated[str, typer.Option("--interval", help="Time between ticks.")] = "15m",
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Images built at once.")
    ] = None,
    git_push: Annotated[bool, typer.Option("--git-push", help="Push each commit.")] = False,
) -> None:
    """Scheduled reconcile loop for hosts without cron."""
    from imagectl.daemon import daemon_command

    raise typer.Exit(
        daemon_command(
            STATE.file,
            interval=interval,
            once=once,
            jobs=jobs or (os.cpu_count() or 1),
            git_push=git_push,
            console=out_console(),
        )
    )


def out_console() -> Console:
    return out


def report(exc: ImagectlError) -> None:
    """Print an expected error cleanly (and as annotations under GitHub Actions)."""
    if isinstance(exc, ManifestError):
        for problem in exc.problems:
            err.print(f"[red]error[/red]: {escape(str(problem))}", markup=True, highlight=False)
        github.annotate_problems(exc.problems)
        count = len(exc.problems)
        err.print(f"{count} error{'s' if count != 1 else ''} in the manifest")
    else:
        err.print(f"[red]error[/red]: {escape(str(exc))}", markup=True)
        github.annotate_error(str(exc))


def main() -> None:
    """Console-script entry point."""
    try:
        # with standalone_mode=False click returns the code of a `typer.Exit`
        code = app(standalone_mode=False)
    except ImagectlError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # click's usage errors (typer vendors click; its classes are not public API)
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise
    sys.exit(code if isinstance(code, int) else 0)
