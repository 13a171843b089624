"""The command line: parse, call one function, render, exit code (docs/design.md section 8).

Start-up is kept cheap: this module imports only typer and the error classes;
each command imports what it uses when it runs (docs/commands.md, "Start-up").
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from imagectl import __version__
from imagectl.errors import ExitCode, ImagectlError, ManifestError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from imagectl.manifest.models import Manifest

app = typer.Typer(
    name="imagectl",
    help="Declarative build pipeline for container images: plan and apply image families.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,  # plain help: no type column (`--help -h <bool>`), no box art
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # logs and CI captures are wider than the 80 columns rich assumes off a terminal;
    # tables are laid out to that width, messages are never broken (soft wrap)
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal or os.environ.get("COLUMNS") else 120
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=True)


@functools.cache
def out_console() -> Console:
    """The console of a command's output (stdout)."""
    return _console()


def _exit_with(command: Callable[..., int], /, *args: Any, **options: Any) -> NoReturn:
    """Run a command function with the output console; exit with the code it returns."""
    raise typer.Exit(command(*args, console=out_console(), **options))


@functools.cache
def err_console() -> Console:
    """The console of errors (stderr)."""
    return _console(stderr=True)


Choice = TypeVar("Choice", bound=StrEnum)


def choice(option: str, value: str, choices: type[Choice]) -> Choice:
    """`value` as a member of `choices`, or a usage error that names every choice."""
    try:
        return choices(value)
    except ValueError:
        names = [str(c) for c in choices]
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise UsageError(f"{option} {value!r} is not a choice: use {listed}") from None


def format_option(choices: type[StrEnum]) -> Any:
    """A `--format` option: a plain string checked by `choice`, completed by the shell."""
    names = [str(c) for c in choices]
    return typer.Option(
        "--format",
        help="Output format.",
        metavar="|".join(names),
        show_default=True,
        autocompletion=lambda: names,
    )


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"imagectl {__version__}\n")
        raise typer.Exit(ExitCode.OK)


class State:
    """Options given before the command."""

    file: Path | None = None  # --file; None: found from the current directory up


STATE = State()


@app.callback()
def _root(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Root manifest file (default: imagectl.yaml here or in a parent, up to the "
            "git root).",
            envvar="IMAGECTL_FILE",
            metavar="PATH",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Declarative build pipeline for container images: plan and apply image families."""
    STATE.file = file


def manifest_path() -> Path:
    """The root manifest: --file, else the nearest imagectl.yaml up to the git root."""
    from imagectl.manifest.discover import find_manifest

    return find_manifest(STATE.file, Path.cwd())


def load(*, lock: bool = True) -> Manifest:
    """Load the manifest named by --file; with `lock`, check imagectl.lock first.

    The lock is read before the manifest so that a bad lock fails before
    anything (the manifest cache included) is written.
    """
    path = manifest_path()
    if lock:
        from imagectl.lockfile import read_lock

        read_lock(Path(os.path.abspath(path)).parent / "imagectl.lock")
    from imagectl.manifest.loader import load_manifest

    return load_manifest(path)


@app.command()
def validate() -> None:
    """Load and check every manifest file offline."""
    manifest = load(lock=False)
    count = len(manifest.images)
    out_console().print(
        f"{manifest_path()}: ok: {count} image{'s' if count != 1 else ''}, "
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
    format_name: Annotated[str, format_option(GraphFormat)] = GraphFormat.tree.value,
) -> None:
    """Show the family/base graph."""
    format = choice("--format", format_name, GraphFormat)
    from imagectl.output import graph as render

    manifest = load(lock=False)
    if format is GraphFormat.tree:
        out_console().print(render.render_tree(manifest))
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


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to create the repository.", metavar="DIR")
    ] = Path("."),
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help=(
                "Push prefix HOST[:PORT]/PATH [default: $IMAGECTL_DEV_REGISTRY, "
                "else 127.0.0.1:5055, then /<DIR name>]."
            ),
            envvar="IMAGECTL_INIT_REGISTRY",
            metavar="PREFIX",
        ),
    ] = None,
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="The external base image the family builds on.",
            envvar="IMAGECTL_INIT_BASE",
            metavar="REF",
        ),
    ] = "docker.io/library/debian:bookworm-slim",
    workflow: Annotated[
        bool,
        typer.Option("--workflow", help="Also write a nightly GitHub Actions reconcile."),
    ] = False,
) -> None:
    """Scaffold a git-ops repository; never overwrites a file."""
    from imagectl import init as scaffold
    from imagectl.schema import schema_text

    files = scaffold.plan_scaffold(
        registry=registry
        or scaffold.default_registry(directory, os.environ.get("IMAGECTL_DEV_REGISTRY")),
        base=base,
        schema=schema_text(),
        workflow=workflow,
    )
    scaffold.write_scaffold(directory, files)
    ran_git = scaffold.git_init(directory)
    console = out_console()
    for item in files:
        console.print(f"created {directory / item.path}")
    if ran_git:
        console.print(f"initialised a git repository in {directory}")
    console.print("next steps:")
    for step in (
        f"cd {directory}",
        "git add -A && git commit -m 'imagectl init'",
        "imagectl validate",
        "imagectl plan",
        "imagectl apply",
    ):
        console.print(f"  {step}")


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
    list[str] | None,
    typer.Option("--force", help="Rebuild this image (repeatable).", metavar="IMAGE"),
]
OnlyOpt = Annotated[
    list[str] | None,
    typer.Option("--only", help="Only this image and what it needs (repeatable).", metavar="IMAGE"),
]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", help="Recover state from the registry, not just the lock.")
]
NowOpt = Annotated[
    str | None, typer.Option("--now", help="Plan as of this UTC time.", metavar="TIMESTAMP")
]


@app.command()
def plan(
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan for apply.", metavar="FILE")
    ] = None,
    refresh: RefreshOpt = False,
    force: ForceOpt = None,
    only: OnlyOpt = None,
    now: NowOpt = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    format_name: Annotated[str, format_option(PlanFormat)] = PlanFormat.table.value,
    explain: Annotated[
        str | None,
        typer.Option("--explain", metavar="IMAGE", help="Show the evidence behind each reason."),
    ] = None,
) -> None:
    """Show what apply would rebuild, and why."""
    format = choice("--format", format_name, PlanFormat)
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
        explain=explain,
    )
    if detailed_exitcode and code:
        raise typer.Exit(ExitCode.CHANGES)


@app.command()
def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (plan --out); applied exactly.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="Images built at once (default: CPUs).", metavar="N"
        ),
    ] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Build only; push nothing.")] = False,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not commit the lock.")] = False,
    git_push: Annotated[
        bool, typer.Option("--git-push", help="Claim the versions in git, push the commits.")
    ] = False,
    pull: Annotated[
        bool, typer.Option("--pull", help="Fast-forward the branch from its upstream first.")
    ] = False,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Build uncommitted inputs (revision <sha>-dirty).")
    ] = False,
    guard_races: Annotated[
        bool,
        typer.Option(
            "--guard-races",
            help="Without a git claim: re-read the registry around each push against "
            "another apply of the same images running meanwhile.",
        ),
    ] = False,
    force: ForceOpt = None,
    only: OnlyOpt = None,
    refresh: RefreshOpt = False,
    now: NowOpt = None,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout", help="Seconds to wait for another apply.", metavar="SECONDS"
        ),
    ] = 0.0,
    author: Annotated[
        str | None,
        typer.Option("--author", help='Commit author, "Name <email>".', metavar="AUTHOR"),
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
        pull=pull,
        allow_dirty=allow_dirty,
        guard_races=guard_races,
    )
    raise typer.Exit(code)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    now: NowOpt = None,
) -> None:
    """Per image: version, digest, base, age, and whether it is stale."""
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
    format_name: Annotated[str, format_option(LintFormat)] = LintFormat.text.value,
) -> None:
    """Best-practice rules over the manifests and Dockerfiles."""
    format = choice("--format", format_name, LintFormat)
    from imagectl.lint import lint_command

    raise typer.Exit(
        lint_command(load(lock=False), hadolint=hadolint, format=str(format), out=sys.stdout)
    )


@app.command()
def prune(
    keep: Annotated[
        int, typer.Option("--keep", min=1, help="Newest versions kept.", metavar="N")
    ] = 10,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only versions older than this (90d).", metavar="AGE"),
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Delete; default is a dry run.")] = False,
    now: NowOpt = None,
) -> None:
    """Registry retention per image; a dry run unless --apply."""
    from imagectl.prune import prune_command

    when = parse_now(now)
    _exit_with(prune_command, load(), keep=keep, older_than=older_than, apply=apply, now=when)


@app.command()
def verify(
    images: Annotated[
        list[str] | None,
        typer.Argument(help="Images (default: all recorded).", metavar="IMAGE"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    format_name: Annotated[str, format_option(LintFormat)] = LintFormat.text.value,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="PEM public key to verify with.", metavar="PUB"),
    ] = None,
) -> None:
    """Check the registry against the lock: tags, signatures, provenance, SBOMs."""
    format = choice("--format", format_name, LintFormat)  # text, json, github annotations
    from imagectl.supply.verify import run_verify

    fmt = "json" if json_out else str(format)
    raise typer.Exit(run_verify(load(), images or [], key=key, format=fmt, console=out_console()))


@app.command()
def keygen(
    prefix: Annotated[
        Path, typer.Argument(help="Writes PREFIX.key and PREFIX.pub.", metavar="PREFIX")
    ] = Path("cosign"),
    passphrase_env: Annotated[
        str,
        typer.Option("--passphrase-env", help="Variable holding the passphrase.", metavar="NAME"),
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
    interval: Annotated[
        str, typer.Option("--interval", help="Time between ticks.", metavar="DURATION")
    ] = "15m",
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Images built at once.", metavar="N")
    ] = None,
    git_push: Annotated[bool, typer.Option("--git-push", help="Push each commit.")] = False,
) -> None:
    """Scheduled reconcile loop for hosts without cron."""
    from imagectl.daemon import daemon_command

    cpus = jobs or (os.cpu_count() or 1)
    _exit_with(
        daemon_command, manifest_path(), interval=interval, once=once, jobs=cpus, git_push=git_push
    )


def report(exc: ImagectlError) -> None:
    """Print an expected error cleanly (and as annotations under GitHub Actions)."""
    from rich.markup import escape

    from imagectl.output import github

    err = err_console()
    if isinstance(exc, ManifestError):
        for problem in exc.problems:
            err.print(f"[red]error[/red]: {escape(str(problem))}", markup=True, highlight=False)
        github.annotate_problems(exc.problems)
        count = len(exc.problems)
        err.print(f"{count} error{'s' if count != 1 else ''} in the manifest")
    else:
        err.print(f"[red]error[/red]: {escape(str(exc))}", markup=True)
        github.annotate_error(str(exc))


def render_help() -> str:
    """The top-level `--help` text at 80 columns (what `imagectl/help.txt` holds)."""
    command = typer.main.get_command(app)
    with command.make_context("imagectl", [], resilient_parsing=True) as ctx:
        ctx.terminal_width = ctx.max_content_width = 80
        return command.get_help(ctx) + "\n"


def main() -> None:
    """Run the command line (the console script enters through `imagectl.entry`)."""
    try:
        # with standalone_mode=False click returns the code of a `typer.Exit`
        code = app(standalone_mode=False, prog_name="imagectl")
    except ImagectlError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console().print("aborted")
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        # click's usage errors (typer vendors click; its classes are not public API)
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
