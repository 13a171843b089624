"""The plan, apply and status commands as plain functions returning an exit code."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from imagectl.errors import PlanError, RegistryError, UsageError
from imagectl.explain import explain_command
from imagectl.gcpause import paused_gc
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, read_lock, write_lock
from imagectl.manifest.models import Manifest
from imagectl.observe import image_inputs
from imagectl.output import github
from imagectl.output.failures import describe_failure
from imagectl.output.plan_view import (
    github_matrix_json,
    plan_markdown,
    plan_table,
    summary_line,
)
from imagectl.pipeline import compute_plan, make_client
from imagectl.plan.model import Observed, Plan, PlanOptions
from imagectl.planfile import load_plan, save_plan

if TYPE_CHECKING:  # apply, git and builders stay out of the plan path (docs/commands.md)
    from imagectl.apply.engine import ApplyResult

EXIT_INTERRUPTED = 130


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
    with make_client() as client:
        plan, observed = compute_plan(manifest, client, now=now, options=options, refresh=refresh)
    if explain is not None:
        explain_command(manifest, explain, observed, plan.action(explain), now, console)
        return 1 if plan.changed else 0
    if out is not None:
        save_plan(out, plan, manifest)
    if format == "json":
        sys.stdout.write(json.dumps(plan.to_json(), indent=2) + "\n")
    elif format == "github-matrix":
        sys.stdout.write(github_matrix_json(plan) + "\n")
    else:
        if plan.actions:
            console.print(plan_table(plan))
        console.print(summary_line(plan))
        if out is not None:
            console.print(f"Saved plan to {out}; apply it with `imagectl apply {out}`.")
    _github_plan_outputs(plan)
    if github.active():
        github.write_summary(plan_markdown(plan))
    return 1 if plan.changed else 0


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
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            from imagectl.proc import die_of

            die_of(signum)  # no build may outlive imagectl
        stop.set()
        print(
            f"imagectl: {signal.Signals(signum).name}: finishing images in flight, "
            "starting no new ones (send again to abort)",
            file=sys.stderr,
            flush=True,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
) -> int:
    """Plan (or load a saved plan) and apply it under the repository lock."""
    from imagectl.apply.engine import ApplyOptions, apply_plan, commit_pending, state_dir
    from imagectl.output.progress import Progress
    from imagectl.repolock import RepoLock

    read_lock(manifest.lock_path)  # a bad lock fails here, before anything is written
    with RepoLock(state_dir(manifest) / "apply.lck", timeout=lock_timeout), make_client() as client:
        if plan_file is not None:
            plan = load_plan(plan_file, manifest)
            _check_saved_inputs(manifest, plan)
        else:
            options = PlanOptions(force=frozenset(force), only=frozenset(only))
            plan, observed = compute_plan(
                manifest, client, now=now, options=options, refresh=refresh
            )
            if push:
                _record_recovered(manifest, observed, git=git, author=author, console=console)
        if not plan.actions:
            console.print(summary_line(plan))
            console.print("Nothing to do: every image is up to date.")
            pending = commit_pending(
                manifest, ApplyOptions(push=push, git=git, git_push=git_push, author=author)
            )
            if pending:
                console.print(f"Committed the lock an interrupted apply left: {pending[:12]}")
            _github_plan_outputs(plan)
            return 0
        console.print(plan_table(plan))
        console.print(summary_line(plan))
        options_ = ApplyOptions(jobs=jobs, push=push, git=git, git_push=git_push, author=author)
        with _graceful_stop() as stop, Progress(console, plan.actions) as progress:
            result = apply_plan(manifest, plan, client, options_, on_step=progress, stop=stop)
    return _report_apply(plan, result, console)


def _record_recovered(
    manifest: Manifest,
    observed: Observed,
    *,
    git: bool,
    author: tuple[str, str] | None,
    console: Console,
) -> None:
    """Write into the lock what the registry says was built and the lock lacks.

    A lost lock (or one behind the registry, e.g. after builds on other runners)
    is restored from the images' labels, and committed like any apply's record.
    """
    from imagectl import gitops

    lock = read_lock(manifest.lock_path) or Lock()
    recovered: list[str] = []
    for name, state in sorted(observed.built.items()):
        record = lock.images.get(name)
        image = manifest.images.get(name)
        if image is None or (record is not None and record.digest == state.digest):
            continue
        lock = lock.with_image(
            name,
            ImageRecord(
                repository=image.repository,
                version=state.version,
                digest=state.digest,
                tags=list(state.tags),
                base=BaseRecord(ref=state.base_ref, digest=state.base_digest),
                inputs=state.inputs,
                built_at=state.built_at,
                revision=None,
            ),
        )
        recovered.append(f"{name} {state.version} (recovered from the registry)")
    if not recovered:
        return
    write_lock(manifest.lock_path, lock)
    console.print(f"Recorded {len(recovered)} image(s) from the registry in the lock.")
    worktree = gitops.find_worktree(manifest.root_dir) if git else None
    if worktree is not None:
        title = f"imagectl: record {len(recovered)} image(s) found in the registry"
        gitops.commit_files(
            worktree, [manifest.lock_path], gitops.commit_message(title, recovered), author
        )


def _report_apply(plan: Plan, result: ApplyResult, console: Console) -> int:
    from imagectl.output.progress import summary_counts, summary_table

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
    if result.interrupted:
        return EXIT_INTERRUPTED
    return 1 if result.failed else 0


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

    When the registry cannot be read (unreachable, refused, a base missing), the
    lock's records are shown and staleness is unknown; the reason is printed (and
    given as ``registry_error`` in JSON). It is not a failure: exit 0.
    """
    from rich.table import Table

    plan: Plan | None = None
    registry_error: str | None = None
    try:
        with make_client() as client:
            plan, _ = compute_plan(manifest, client, now=now, options=PlanOptions())
    except RegistryError as exc:
        registry_error = str(exc)
    rows = status_rows(manifest, plan, now)
    if json_out:
        document: dict[str, Any] = {"format": 1, "images": rows}
        if registry_error is not None:
            document["registry_error"] = registry_error
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = Table(header_style="bold")
    for column in ("image", "version", "digest", "base", "age", "stale"):
        table.add_column(column, overflow="fold")
    for row in rows:
        base = (row["base"] or "-").split("@")[0]
        table.add_row(
            row["image"],
            row["version"] or "-",
            (row["digest"] or "-")[:19],
            base,
            row["age"] or "-",
            _status_cell(row),
        )
    console.print(table)
    as_of = f"as of {now:%Y-%m-%dT%H:%M:%SZ}"
    if registry_error is not None:
        console.print(
            f"{len(rows)} images, staleness unknown ({as_of}): the registry could not be read, "
            "so the table shows what the lock records."
        )
        console.print(f"registry: {escape(registry_error)}")
        return
    stale_count = sum(1 for r in rows if r["stale"])
    console.print(f"{len(rows)} images, {stale_count} stale ({as_of}).")


__all__ = ["UTC", "apply_command", "plan_command", "status_command"]
