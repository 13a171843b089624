"""Execute a plan: DAG-parallel images, the per-image protocol, the lock, the git commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from imagectl import fsutil, gitops
from imagectl.apply.protocol import (
    ImageRunner,
    LockRecorder,
    Outcome,
    RunContext,
    Step,
    fault_point,
)
from imagectl.apply.scheduler import JobState, run_dag
from imagectl.errors import GitOpsError
from imagectl.lockfile import Lock, read_lock, write_lock
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Plan
from imagectl.plan.versions import version_key
from imagectl.registry import RegistryClient


@dataclass(frozen=True)
class ApplyOptions:
    """How to apply."""

    jobs: int = 1
    push: bool = True
    git: bool = True
    git_push: bool = False
    author: tuple[str, str] | None = None
    log_dir: Path | None = None


@dataclass
class ApplyResult:
    """The outcome of every image, the builder modes used, and the git commit made."""

    outcomes: dict[str, Outcome]
    builder_modes: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    pushed: bool = False
    interrupted: bool = False
    log_dir: Path | None = None

    @property
    def failed(self) -> bool:
        return any(o.state in ("failed", "skipped") for o in self.outcomes.values())


def state_dir(manifest: Manifest) -> Path:
    """`.imagectl/` beside the manifest: logs and the apply lock; ignores itself in git."""
    return fsutil.state_dir(manifest.root_dir)


def commit_lines(plan: Plan, outcomes: dict[str, Outcome]) -> list[str]:
    """One line per recorded image: `name old -> new (reasons)`."""
    lines = []
    for action in plan.actions:
        outcome = outcomes[action.image]
        if outcome.state in ("built", "adopted") and outcome.digest:
            lines.append(
                f"{action.image} {action.from_version or '(new)'} -> {action.to_version} "
                f"({', '.join(action.reasons)})"
            )
    return lines


def pending_lines(lock: Lock | None, head: str | None, done: set[str]) -> list[str]:
    """Lines for images recorded at `head` but not by this run: what a killed apply left.

    A record carries the git-ops revision it was built at; once committed, HEAD moves
    past it. So a record whose revision is still HEAD is not committed yet.
    """
    lines = []
    for name, record in sorted((lock.images if lock else {}).items()):
        if name in done or record.revision != head:
            continue
        older = [v for v in record.versions if version_key(v) < version_key(record.version)]
        previous = max(older, key=version_key) if older else "(new)"
        lines.append(f"{name} {previous} -> {record.version} (recorded by an interrupted apply)")
    return lines


def commit_lock(
    worktree: Path,
    manifest: Manifest,
    lines: list[str],
    author: tuple[str, str] | None,
) -> str | None:
    """Commit the lock whenever it differs from HEAD's, with `lines` plus what is pending.

    Whether this run recorded anything does not matter: an apply killed between
    writing the lock and committing it leaves the lock ahead of git, and the next
    apply, even one with nothing to do, must commit it.
    """
    if not gitops.is_dirty(worktree, [manifest.lock_path]):
        return None
    head = gitops.head_revision(worktree)
    done = {line.split(" ", 1)[0] for line in lines}
    lines = [*lines, *pending_lines(read_lock(manifest.lock_path), head, done)]
    count = len(lines)
    title = f"imagectl: rebuild {count} image{'s' if count != 1 else ''}"
    if not lines:  # a first lock with no image yet, or records HEAD has moved past
        title = "imagectl: update the lock"
    fault_point("*", "commit")
    return gitops.commit_files(
        worktree, [manifest.lock_path], gitops.commit_message(title, lines), author
    )


def commit_pending(manifest: Manifest, options: ApplyOptions) -> str | None:
    """For an apply with nothing to do: commit a lock an interrupted apply left behind."""
    if not (options.git and options.push):
        return None
    worktree = gitops.find_worktree(manifest.root_dir)
    if worktree is None:
        return None
    commit = commit_lock(worktree, manifest, [], options.author)
    if commit is not None and options.git_push:
        gitops.push(worktree)
    return commit


def apply_plan(
    manifest: Manifest,
    plan: Plan,
    client: RegistryClient,
    options: ApplyOptions,
    *,
    on_step: Step | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ApplyResult:
    """Build, push, verify, tag and record every action; then commit the lock.

    A failed image fails alone (descendants skipped); the lock keeps every image
    that succeeded. The caller holds the repository lock.
    """
    worktree = gitops.find_worktree(manifest.root_dir) if options.git else None
    probe = gitops.find_worktree(manifest.root_dir)
    revision = gitops.head_revision(probe) if probe else None
    source = gitops.source_url(probe) if probe else None
    log_dir = options.log_dir or (state_dir(manifest) / "logs" / now().strftime("%Y%m%dT%H%M%SZ"))
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        manifest=manifest,
        client=client,
        log_dir=log_dir,
        revision=revision,
        source=source,
        now=now,
        push=options.push,
        on_step=on_step,
    )
    recorder = LockRecorder(manifest.lock_path, read_lock(manifest.lock_path))
    actions = {a.image: a for a in plan.actions}
    runner = ImageRunner(ctx, actions, recorder)
    parents = {a.image: (a.depends_on[0] if a.depends_on else None) for a in plan.actions}

    def job(name: str) -> None:
        runner.outcomes[name].started = time.monotonic()
        try:
            runner.run(name)
        finally:
            runner.outcomes[name].finished = time.monotonic()

    def skipped(name: str, reason: str) -> None:
        outcome = runner.outcomes[name]
        outcome.state = "cancelled" if reason == "interrupted" else "skipped"
        outcome.error = reason
        if on_step:
            on_step(name, outcome.state)

    # The lock exists before anything is pushed, and is committed even if this run
    # records nothing: an apply that dies or fails after a push leaves a lock, so the
    # next plan reads it and adopts the pushed image, moving its floating tags; without
    # one it would recover from labels, which say nothing of those tags.
    if options.push and not manifest.lock_path.exists():
        write_lock(manifest.lock_path, recorder.lock)
    results = run_dag(
        [a.image for a in plan.actions],
        parents,
        job,
        jobs=options.jobs,
        stop=stop,
        on_skip=skipped,
    )
    for name, result in results.items():
        if result.state is JobState.FAILED and runner.outcomes[name].state != "failed":
            runner.outcomes[name].state = "failed"
            runner.outcomes[name].error = str(result.error)
    outcome = ApplyResult(
        outcomes=runner.outcomes,
        builder_modes=dict(runner.builder_modes),
        interrupted=any(r.state is JobState.CANCELLED for r in results.values()),
        log_dir=log_dir,
    )
    if worktree is not None and options.push:
        lines = commit_lines(plan, runner.outcomes)
        outcome.commit = commit_lock(worktree, manifest, lines, options.author)
        if outcome.commit is not None and options.git_push:
            gitops.push(worktree)
            outcome.pushed = True
    elif options.git_push and worktree is None and options.git:
        raise GitOpsError(f"--git-push: {manifest.root_dir} is not in a git work tree")
    return outcome
