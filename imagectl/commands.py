"""The plan, apply and status commands as plain functions returning an exit code."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from imagectl import service
from imagectl.domain.reference import without_digest
from imagectl.errors import ExitCode, GitOpsError, PlanError, RegistryUnreachable, UsageError
from imagectl.explain import explain_command
from imagectl.gcpause import paused_gc
from imagectl.lockfile import Lock, lock_stamp, read_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.observe import image_inputs
from imagectl.output import github
from imagectl.output.failures import describe_failure
from imagectl.output.jsontext import dumps_indented
from imagectl.output.plan_view import (
    github_matrix_json,
    plan_markdown,
    plan_table,
    summary_line,
)
from imagectl.plan.model import Plan, PlanOptions
from imagectl.planfile import load_plan, save_plan
from imagectl.registry.settings import make_client
from imagectl.stopsignals import two_stage_stop
from imagectl.supply.status import supply_cell
from imagectl.textsafe import for_rich

if TYPE_CHECKING:  # apply, git and builders stay out of the plan path (docs/commands.md)
    from imagectl.apply.engine import ApplyOptions, ApplyResult
    from imagectl.ports import Registry
    from imagectl.registry import RegistryClient


def parse_author(text: str | None) -> tuple[str, str] | None:
    """`"Name <email>"` -> (name, email)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(.+?)\s*<([^<>\s]+)>\s*", text)
    if not match:
        raise UsageError(f'--author {text!r}: expected "Name <email>"')
    return match.group(1), match.group(2)


def _github_plan_outputs(plan: Plan) -> None:
    """Step outputs; the matrix is computed only inside GitHub Actions."""
    if not github.active():
        return
    github.set_outputs(
        {
            "changed": "true" if plan.changed else "false",
            "images": json.dumps([a.image for a in plan.actions]),
            "matrix": github_matrix_json(plan),
        }
    )


@paused_gc()  # a plan builds and renders 10,000s of objects and no cycle (gcpause.py)
def plan_command(
    manifest: Manifest,
    *,
    out: Path | None,
    refresh: bool,
    force: Sequence[str],
    only: Sequence[str],
    now: datetime,
    format: str,
    console: Console,
    explain: str | None = None,
) -> int:
    """Plan and render; returns 1 when there are changes (for --detailed-exitcode), else 0."""
    options = PlanOptions(force=frozenset(force), only=frozenset(only))
    check_tools(manifest)  # `sbom: true` without trivy fails here
    with make_client() as client:
        planned = service.plan(manifest, client, now=now, options=options, refresh=refresh)
        plan, observed = planned.plan, planned.observed
        refused = _refused_bases(client, manifest, plan)  # `bases.<n>.verify:`
    if explain is not None and observed is not None:  # a fresh plan always observed
        explain_command(manifest, explain, observed, plan.action(explain), now, console)
        return _plan_exit(plan)
    if out is not None:
        save_plan(out, plan, manifest)
    if format == "json":
        from imagectl.supply.step import with_refused

        sys.stdout.write(dumps_indented(with_refused(plan.to_json(), refused)) + "\n")
    elif format == "github-matrix":
        sys.stdout.write(github_matrix_json(plan) + "\n")
    else:
        if plan.actions:
            console.print(plan_table(plan))
        console.print(summary_line(plan))
        for image, why in refused.items():
            console.print(f"[red]base refused[/red]: {escape(image)}: {escape(why)}")
        if out is not None:
            console.print(f"Saved plan to {out}; apply it with `imagectl apply {out}`.")
    _github_plan_outputs(plan)
    if github.active():
        github.write_summary(plan_markdown(plan))
    _refuse_blocked(plan)
    return _plan_exit(plan)


def _plan_exit(plan: Plan) -> int:
    """FAILED (1) when there are changes, which `--detailed-exitcode` turns into CHANGES."""
    return ExitCode.FAILED if plan.changed else ExitCode.OK


def _refuse_blocked(plan: Plan) -> None:
    """Exit 1 when an image of the plan cannot be built as planned (apply fails it alone)."""
    blocked = plan.blocked
    if blocked:
        count = len(blocked)
        raise PlanError(
            f"{count} image{'s' if count != 1 else ''} cannot be built as planned "
            "(apply fails them alone; the other images go on):\n"
            + "\n".join(f"  {a.image}: {a.blocked}" for a in blocked)
        )


def check_tools(manifest: Manifest) -> None:
    """`sbom: true` needs trivy: fail before anything is planned or built."""
    if any(image.sbom for image in manifest.images.values()):
        from imagectl.supply.preflight import check_tools

        check_tools(manifest)


def _refused_bases(client: RegistryClient, manifest: Manifest, plan: Plan) -> dict[str, str]:
    """Image -> why its base's signature is refused (only bases with `verify:` are read)."""
    if not any(base.verify_key for base in manifest.bases.values()):
        return {}
    from imagectl.supply.step import unverified_bases

    return unverified_bases(client, manifest, plan.actions)


def _check_saved_inputs(manifest: Manifest, plan: Plan) -> None:
    frontends = {a.image: a.frontend for a in plan.actions if a.frontend is not None}
    current = image_inputs(manifest, frontends=frontends)  # the saved plan pinned them
    changed = [a.image for a in plan.actions if current.get(a.image) != a.inputs]
    if changed:
        raise PlanError(
            "saved plan is stale: build inputs changed since it was made for "
            f"{', '.join(changed)}; run `imagectl plan --out` again"
        )


@contextmanager
def _graceful_stop() -> Iterator[threading.Event]:
    """First SIGINT/SIGTERM: start no new image, let running ones finish. Second: kill the
    builds (`proc.die_of`) and die of the signal."""
    stop = threading.Event()
    message = (
        "imagectl: {signal}: finishing images in flight, starting no new ones (send again to abort)"
    )
    with two_stage_stop(stop.is_set, stop.set, message):
        yield stop


def apply_command(
    manifest: Manifest,
    *,
    plan_file: Path | None,
    jobs: int,
    push: bool,
    git: bool,
    git_push: bool,
    force: Sequence[str],
    only: Sequence[str],
    refresh: bool,
    now: datetime,
    lock_timeout: float,
    author: tuple[str, str] | None,
    console: Console,
    pull: bool = False,
    allow_dirty: bool = False,
    guard_races: bool = False,
) -> int:
    """Plan (or load a saved plan) and apply it under the repository lock; the exit code.

    With `pull`, the branch is first fast-forwarded to its upstream (a diverged one
    is refused). The run's inputs must be committed (else exit 1, unless
    `allow_dirty`). Under `git_push` the planned versions are claimed in git before
    anything is pushed (imagectl/apply/claims.py); a claim refused because the remote
    moved re-plans from the remote's new state. The work is done by the service layer
    (imagectl/service.py); this function renders it.
    """
    from imagectl import gitops
    from imagectl.apply.engine import ApplyOptions, state_dir
    from imagectl.applymutex import ApplyMutex

    lock = read_lock(manifest.lock_path)  # a bad lock fails here, before anything is written
    stamp = lock_stamp(manifest.lock_path)
    check_tools(manifest)
    settings = ApplyOptions(
        jobs=jobs,
        push=push,
        git=git,
        git_push=git_push,
        author=author,
        allow_dirty=allow_dirty,
        saved=plan_file is not None,
        guard_races=guard_races,
    )
    with (
        ApplyMutex(state_dir(manifest) / "apply.lck", timeout=lock_timeout),
        make_client() as client,
    ):
        worktree = gitops.find_worktree(manifest.root_dir)
        if pull:
            manifest = _pull(manifest, worktree if git else None, console)
        first: Lock | None = lock if lock_stamp(manifest.lock_path) == stamp else None

        def planner(current: Manifest) -> service.Planned:
            # the lock read above serves the first plan, unless it changed meanwhile (a
            # pull, another apply finishing); a re-plan after the remote moved reads it
            nonlocal first
            current_lock, first = first, None
            if current_lock is None:
                current_lock = read_lock(current.lock_path)
            if plan_file is not None:
                saved = load_plan(plan_file, current)
                _check_saved_inputs(current, saved)
                return service.Planned(saved, lock=current_lock)
            options = PlanOptions(force=frozenset(force), only=frozenset(only))
            return service.plan(
                current, client, now=now, options=options, refresh=refresh, lock=current_lock
            )

        applied = run_apply(
            manifest,
            client,
            settings,
            first=planner(manifest),
            replan=planner,
            worktree=worktree,
            console=console,
        )
    return exit_code(applied)


def run_apply(
    manifest: Manifest,
    registry: Registry,
    settings: ApplyOptions,
    *,
    first: service.Planned,
    replan: service.Planner,
    worktree: Path | None,
    console: Console,
) -> service.Applied:
    """Apply `first` (re-planning with `replan` when the remote moves) and render it all:
    notes, the plan table, live progress, the summary. The caller holds the apply mutex."""
    from imagectl.output.progress import Progress

    def note(line: str) -> None:
        console.print(escape(line), highlight=False)

    prepared = service.prepare(
        manifest, settings, first=first, replan=replan, worktree=worktree, note=note
    )
    if isinstance(prepared, service.Applied):
        return _nothing_to_do(prepared, console)
    if prepared.dirty:
        console.print(
            "[yellow]Building from uncommitted inputs (--allow-dirty): the revision is "
            f"{escape(prepared.revision or '')}[/yellow]"
        )
    plan = prepared.plan
    console.print(plan_table(plan))
    console.print(summary_line(plan))
    with _graceful_stop() as stop, Progress(console, plan.actions) as progress:
        applied = service.run(prepared, registry, on_step=progress, stop=stop)
    _report_apply(applied, console)
    return applied


def exit_code(applied: service.Applied) -> int:
    """The exit code of an apply (errors.ExitCode)."""
    return int(applied.exit_code)


def _pull(manifest: Manifest, worktree: Path | None, console: Console) -> Manifest:
    """`--pull`: fast-forward to the upstream; the manifest is re-read when it moved."""
    from imagectl import gitops

    if worktree is None:
        raise GitOpsError(f"--pull: {manifest.root_dir} is not in a git work tree")
    synced = gitops.sync(worktree)
    console.print(f"Pull: {synced.describe()}", highlight=False)
    return load_manifest(manifest.root) if synced.pulled else manifest


def _nothing_to_do(applied: service.Applied, console: Console) -> service.Applied:
    console.print(summary_line(applied.plan))
    console.print("Nothing to do: every image is up to date.")
    if applied.commit:
        console.print(
            f"Committed the lock: {applied.commit[:12]}" + (" (pushed)" if applied.pushed else "")
        )
    elif applied.pushed:
        console.print("Pushed the branch: it was ahead of its upstream.")
    _github_plan_outputs(applied.plan)
    return applied


def _report_apply(applied: service.Applied, console: Console) -> None:
    from imagectl.output.progress import summary_counts, summary_table

    plan, result = applied.plan, applied.result
    assert result is not None

    for name, mode in sorted(result.builder_modes.items()):
        console.print(f"builder {name}: {mode}")
    console.print(summary_table(plan.actions, result.outcomes))
    console.print(summary_counts(result.outcomes))
    for action in plan.actions:
        outcome = result.outcomes[action.image]
        if outcome.state == "failed":
            log = outcome.log_path if outcome.log_path and outcome.log_path.exists() else None
            failure = describe_failure(action.image, outcome.error, log)
            with github.group(f"{action.image}: failed"):
                console.print(
                    f"[red]{escape(action.image)} failed[/red]: {escape(failure.message)}",
                    highlight=False,
                )
                if failure.log_path:
                    console.print(f"full log: {escape(failure.log_path)}", highlight=False)
            github.annotate_error(failure.headline)
    if result.commit:
        console.print(
            f"Committed the lock: {result.commit[:12]}" + (" (pushed)" if result.pushed else "")
        )
    if github.active():
        github.set_outputs(
            {
                "changed": "true",
                "images": json.dumps(
                    [n for n, o in result.outcomes.items() if o.state in ("built", "adopted")]
                ),
                "matrix": github_matrix_json(plan),
            }
        )
        github.write_summary(_apply_markdown(plan, result))


def _apply_markdown(plan: Plan, result: ApplyResult) -> str:
    lines = [
        "## imagectl apply",
        "",
        "| image | version | state | digest |",
        "| --- | --- | --- | --- |",
    ]
    for action in plan.actions:
        outcome = result.outcomes[action.image]
        lines.append(
            f"| `{action.image}` | {action.from_version or '-'} → {action.to_version} | "
            f"{outcome.state} | `{(outcome.digest or '')[:19]}` |"
        )
    return "\n".join(lines) + "\n"


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_rows(manifest: Manifest, plan: Plan | None, now: datetime) -> list[dict[str, Any]]:
    """Per image: recorded version, digest, base, built time, age, stale and why.

    `plan` None means the registry could not be read: what the lock records is
    shown, and `stale`, `reasons` and `next_version` are None (unknown).
    """
    lock = read_lock(manifest.lock_path)
    rows = []
    for name in sorted(manifest.images):
        record = lock.images.get(name) if lock else None
        action = plan.action(name) if plan is not None else None
        rows.append(
            {
                "image": name,
                "version": record.version if record else None,
                "digest": record.digest if record else None,
                "base": f"{record.base.ref}@{record.base.digest}" if record else None,
                "built_at": record.built_at.isoformat().replace("+00:00", "Z") if record else None,
                "age": _age(record.built_at, now) if record else None,
                "stale": None if plan is None else action is not None,
                "reasons": None
                if plan is None
                else [str(r) for r in action.reasons]
                if action
                else [],
                "next_version": action.to_version if action else None,
            }
        )
    return rows


def _status_cell(row: dict[str, Any]) -> str:
    if row["stale"] is None:
        return "unknown"
    return ", ".join(row["reasons"]) if row["stale"] else "no"


def status_command(manifest: Manifest, *, now: datetime, json_out: bool, console: Console) -> None:
    """Print the status table or JSON.

    When the registry cannot be reached (connection refused, reset, timed out), the
    lock's records are shown and staleness is unknown; the reason is printed (and
    given as ``registry_error`` in JSON). It is not a failure: exit 0. A registry
    that answers wrongly (refused credentials, a broken or hostile reply) is an error.
    """
    from rich.table import Table

    plan: Plan | None = None
    registry_error: str | None = None
    rows: list[dict[str, Any]] = []
    try:
        with make_client() as client:
            plan = service.plan(manifest, client, now=now, options=PlanOptions()).plan
            rows = status_rows(manifest, plan, now)
            if any(image.sign is not None for image in manifest.images.values()):
                from imagectl.supply.status import with_supply_state

                rows = with_supply_state(client, manifest, rows)
    except RegistryUnreachable as exc:  # a registry that answers wrongly is an error
        registry_error = str(exc)
    if registry_error is not None:
        rows = status_rows(manifest, None, now)
    rows = [{"signed": None, "attested": None, **row} for row in rows]
    if json_out:
        document: dict[str, Any] = {"format": 1, "images": rows}
        if registry_error is not None:
            document["registry_error"] = registry_error
        sys.stdout.write(dumps_indented(document) + "\n")
        return
    table = Table(header_style="bold")
    signing = any(r["signed"] is not None for r in rows)  # a `signed` column only with `sign:`
    columns = ["image", "version", "digest", "base", "age", "stale"] + ["signed"] * signing
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        base = without_digest(row["base"] or "-")
        cells = (row["image"], row["version"] or "-", (row["digest"] or "-")[:19], base)
        # lock values may come from a registry (recovery): inert text, never markup
        table.add_row(
            *(for_rich(cell) for cell in cells),
            row["age"] or "-",
            for_rich(_status_cell(row)),
            *([supply_cell(row)] if signing else []),
        )
    console.print(table)
    as_of = f"as of {now:%Y-%m-%dT%H:%M:%SZ}"
    if registry_error is not None:
        console.print(
            f"{len(rows)} images, staleness unknown ({as_of}): the registry could not be read, "
            "so the table shows what the lock records."
        )
        console.print(f"registry: {for_rich(registry_error)}")
        return
    stale_count = sum(1 for r in rows if r["stale"])
    console.print(f"{len(rows)} images, {stale_count} stale ({as_of}).")


__all__ = ["UTC", "apply_command", "plan_command", "status_command"]
