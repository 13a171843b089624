"""Execute a plan: DAG-parallel images, the per-image protocol, the lock, the git commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from imagectl import fsutil, gitops
from imagectl.apply.claims import Me
from imagectl.apply.protocol import ImageRunner, Outcome, OutcomeState, RunContext, Step
from imagectl.apply.provenance import run_revision
from imagectl.apply.run_record import RunRecord
from imagectl.apply.scheduler import Finish, JobState, run_dag
from imagectl.builders.base import Builder
from imagectl.errors import GitOpsError
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Plan
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
    dirty: bool = False  # inputs differ from HEAD (--allow-dirty): the revision is <sha>-dirty
    revision: str | None = None  # fixed once per run (the HEAD the plan saw); None: HEAD now
    allow_dirty: bool = False  # --allow-dirty: build uncommitted inputs (then `dirty`)
    saved: bool = False  # the plan is a saved plan: applied exactly, never re-planned
    guard_races: bool = False  # --guard-races: registry reads against a concurrent unclaimed run


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


def apply_plan(
    manifest: Manifest,
    plan: Plan,
    client: RegistryClient,
    options: ApplyOptions,
    *,
    on_step: Step | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    record: RunRecord | None = None,
    me: Me | None = None,
    builders: Mapping[str, Builder] | None = None,
) -> ApplyResult:
    """Build, push, verify, tag and record every action; then make the record commit.

    A failed image fails alone (descendants skipped); the lock keeps every image
    that succeeded. The caller holds the repository lock. `record` owns the lock and
    git for the run (claims, what was found in the registry, the one record commit);
    without one, the lock is read here and committed to the manifest's work tree
    (unless `options.git` is false). `builders` (name -> Builder) stands in for
    `get_builder` (tests inject fakes); the registry is whatever `client` talks to.
    """
    probe = gitops.find_worktree(manifest.root_dir)
    if record is None:
        worktree = probe if options.git and options.push else None
        record = RunRecord(
            manifest, worktree=worktree, author=options.author, git_push=options.git_push
        )
    revision = options.revision or run_revision(probe, options.dirty)
    source = gitops.source_url(probe) if probe else None
    log_dir = options.log_dir or (state_dir(manifest) / "logs" / now().strftime("%Y%m%dT%H%M%SZ"))
    log_dir.mkdir(parents=True, exist_ok=True)
    shared = (manifest, client, log_dir, revision, source, now, options.push)
    ctx = RunContext(*shared, on_step=on_step, guard_races=options.guard_races)
    recorder = record.recorder(push=options.push)
    actions = {a.image: a for a in plan.actions}
    runner = ImageRunner(ctx, actions, recorder, builders)
    parents = {a.image: (a.depends_on[0] if a.depends_on else None) for a in plan.actions}

    def job(name: str) -> Finish | None:
        outcome = runner.outcomes[name]
        outcome.started = time.monotonic()
        finish: Finish | None = None
        try:
            finish = runner.start(name)
        finally:
            if finish is None:
                outcome.finished = time.monotonic()
        if finish is None:
            return None
        rest = finish

        def finished() -> None:  # verify, sign, tag, record: off the build slot
            try:
                rest()
            finally:
                outcome.finished = time.monotonic()

        return finished

    def skipped(name: str, reason: str) -> None:
        outcome = runner.outcomes[name]
        outcome.state = OutcomeState.CANCELLED if reason == "interrupted" else OutcomeState.SKIPPED
        outcome.error = reason
        if on_step:
            on_step(name, outcome.state)

    try:
        results = run_dag(
            [a.image for a in plan.actions],
            parents,
            job,
            jobs=options.jobs,
            stop=stop,
            on_skip=skipped,
        )
    finally:
        runner.close()
        recorder.finish()  # the run's journal compacted into the lock: one atomic write
    for name, result in results.items():
        if result.state is JobState.FAILED and runner.outcomes[name].state != "failed":
            runner.outcomes[name].state = OutcomeState.FAILED
            runner.outcomes[name].error = str(result.error)
    outcome = ApplyResult(
        outcomes=runner.outcomes,
        builder_modes=dict(runner.builder_modes),
        interrupted=any(r.state is JobState.CANCELLED for r in results.values()),
        log_dir=log_dir,
    )
    record.finished(recorder, pushed_any=any(o.digest for o in runner.outcomes.values()))
    if record.worktree is not None:
        outcome.commit, outcome.pushed = record.finish(plan, runner.outcomes, me or Me())
    elif options.git_push and probe is None and options.git:
        raise GitOpsError(f"--git-push: {manifest.root_dir} is not in a git work tree")
    return outcome


def commit_pending(manifest: Manifest, options: ApplyOptions) -> str | None:
    """For an apply with nothing to do: commit a lock an interrupted apply left behind,
    and push the branch when it is ahead (under --git-push)."""
    if not (options.git and options.push):
        return None
    worktree = gitops.find_worktree(manifest.root_dir)
    if worktree is None:
        return None
    record = RunRecord(
        manifest, worktree=worktree, author=options.author, git_push=options.git_push
    )
    return record.settle()[0]
