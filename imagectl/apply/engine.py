"""Execute a plan: DAG-parallel images, the per-image protocol, the lock, the git commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from imagectl import fsutil, gitops
from imagectl.apply.claims import (
    MAX_ATTEMPTS,
    GitSession,
    Me,
    claim_lines,
    rebase,
    without_mine,
)
from imagectl.apply.protocol import (
    ImageRunner,
    Outcome,
    OutcomeState,
    RunContext,
    Step,
    fault_point,
)
from imagectl.apply.provenance import clean_revision, run_revision
from imagectl.apply.record import LockRecorder
from imagectl.apply.scheduler import JobState, run_dag
from imagectl.builders.base import Builder
from imagectl.domain.versions import version_key
from imagectl.errors import GitOpsError
from imagectl.lockfile import Lock, compact_journal, read_lock, write_lock
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


def recorded_images(outcomes: dict[str, Outcome]) -> set[str]:
    """The images this run recorded in the lock (built or adopted)."""
    return {n for n, o in outcomes.items() if o.state in ("built", "adopted") and o.digest}


def commit_lines(plan: Plan, outcomes: dict[str, Outcome]) -> list[str]:
    """One line per recorded image: `name old -> new (reasons)`; `-` for no old version,
    as in the plan table (`core - -> 0.1.0 (new)`)."""
    done = recorded_images(outcomes)
    return [line for line in claim_lines(plan) if line.split(" ", 1)[0] in done]


def pending_lines(lock: Lock | None, head: str | None, done: set[str]) -> list[str]:
    """Lines for images recorded at `head` but not by this run: what a killed apply left.

    A record carries the git-ops revision it was built at; once committed, HEAD moves
    past it. So a record whose revision is still HEAD is not committed yet.
    """
    lines = []
    for name, record in sorted((lock.images if lock else {}).items()):
        if name in done or clean_revision(record.revision) != head:
            continue
        older = [v for v in record.versions if version_key(v) < version_key(record.version)]
        previous = max(older, key=version_key) if older else "-"
        lines.append(f"{name} {previous} -> {record.version} (recorded by an interrupted apply)")
    return lines


Commit = Callable[[list[Path], str, list[str]], str | None]
"""Commit these files with this title and body lines; returns the sha (None: no change)."""


def plain_commit(worktree: Path, author: tuple[str, str] | None) -> Commit:
    """A :data:`Commit` straight to the work tree's branch."""

    def commit(files: list[Path], title: str, lines: list[str]) -> str | None:
        return gitops.commit_files(worktree, files, gitops.commit_message(title, lines), author)

    return commit


def commit_lock(
    worktree: Path,
    manifest: Manifest,
    lines: list[str],
    commit: Commit,
    notes: Sequence[str] = (),
    *,
    keep_empty: bool = False,
) -> str | None:
    """Commit the lock whenever it differs from HEAD's, with `lines` plus what is pending.

    Whether this run recorded anything does not matter: an apply killed between
    writing the lock and committing it leaves the lock ahead of git, and the next
    apply, even one with nothing to do, must commit it. A lock that records nothing
    (no image, no claim) is never committed: a failed first apply leaves no commit.

    Args:
        worktree: The work tree top.
        manifest: The manifest (where the lock is).
        lines: One line per image this run recorded.
        commit: How to commit (straight, or through the run's git session).
        notes: Further body lines (claims released or dropped).
        keep_empty: Commit even a lock that records nothing yet (an image was pushed but
            not recorded: other clones must adopt it, not recover it from labels).
    """
    compact_journal(manifest.lock_path)  # records a killed run journalled, not yet in the lock
    if not gitops.is_dirty(worktree, [manifest.lock_path]):
        return None
    lock = read_lock(manifest.lock_path)
    if lock is None:
        return None
    empty = not (lock.images or lock.claims or keep_empty)
    if empty and not gitops.is_tracked(worktree, manifest.lock_path):
        return None  # nothing recorded, nothing pushed: no commit
    head = gitops.head_revision(worktree)
    done = {line.split(" ", 1)[0] for line in lines}
    lines = [*lines, *pending_lines(lock, head, done)]
    count = len(lines)
    title = f"imagectl: rebuild {count} image{'s' if count != 1 else ''}"
    if not lines:  # claims released, or records HEAD has moved past
        title = "imagectl: update the lock"
    fault_point("*", "commit")
    return commit([manifest.lock_path], title, [*lines, *notes])


def settle(
    worktree: Path,
    manifest: Manifest,
    options: ApplyOptions,
    session: GitSession | None,
    notes: Sequence[str] = (),
) -> tuple[str | None, bool]:
    """Bring git in step with the lock: commit it when it differs from HEAD, and under
    --git-push push whenever the branch is ahead, even when this run built nothing.

    Returns:
        (the commit made or None, whether the branch was pushed).

    Raises:
        GitOpsError: The push failed (a remote that moved leaves the session rewound:
            see :meth:`GitSession.push`; the caller re-plans).
    """
    commit = session.commit if session is not None else plain_commit(worktree, options.author)
    sha = commit_lock(worktree, manifest, [], commit, notes)
    if not options.git_push or not gitops.unpushed(worktree):
        return sha, False
    if session is None:
        gitops.push(worktree)
        return sha, True
    if not session.push():
        raise RemoteMoved()
    return sha, True


class RemoteMoved(GitOpsError):
    """The git push was refused because the remote moved; the branch is rewound to it."""

    def __init__(self) -> None:
        super().__init__("the remote branch moved; re-plan from its new state")


def commit_pending(manifest: Manifest, options: ApplyOptions) -> str | None:
    """For an apply with nothing to do: commit a lock an interrupted apply left behind,
    and push the branch when it is ahead (under --git-push)."""
    if not (options.git and options.push):
        return None
    worktree = gitops.find_worktree(manifest.root_dir)
    if worktree is None:
        return None
    return settle(worktree, manifest, options, None)[0]


def apply_plan(
    manifest: Manifest,
    plan: Plan,
    client: RegistryClient,
    options: ApplyOptions,
    *,
    on_step: Step | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    session: GitSession | None = None,
    me: Me | None = None,
    notes: Sequence[str] = (),
    builders: Mapping[str, Builder] | None = None,
) -> ApplyResult:
    """Build, push, verify, tag and record every action; then commit the lock.

    A failed image fails alone (descendants skipped); the lock keeps every image
    that succeeded. The caller holds the repository lock. With a git `session`
    (--git-push, claims pushed), this run's claims are released in the final commit,
    and a final push refused because the remote moved is re-applied on the remote's
    new state. `builders` (name -> Builder) stands in for `get_builder` (tests inject fakes);
    the registry is whatever `client` talks to.
    """
    worktree = gitops.find_worktree(manifest.root_dir) if options.git else None
    probe = gitops.find_worktree(manifest.root_dir)
    revision = run_revision(probe, options.dirty)
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
        claimed=session is not None,  # the claim is the compare-and-swap: fewer registry reads
    )
    recorder = LockRecorder(manifest.lock_path, read_lock(manifest.lock_path))
    actions = {a.image: a for a in plan.actions}
    runner = ImageRunner(ctx, actions, recorder, builders)
    parents = {a.image: (a.depends_on[0] if a.depends_on else None) for a in plan.actions}

    def job(name: str) -> None:
        runner.outcomes[name].started = time.monotonic()
        try:
            runner.run(name)
        finally:
            runner.outcomes[name].finished = time.monotonic()

    def skipped(name: str, reason: str) -> None:
        outcome = runner.outcomes[name]
        outcome.state = OutcomeState.CANCELLED if reason == "interrupted" else OutcomeState.SKIPPED
        outcome.error = reason
        if on_step:
            on_step(name, outcome.state)

    # The lock exists before anything is pushed, and is committed even if this run
    # records nothing once it pushed something: an apply that dies or fails after a push
    # leaves a lock, so the next plan reads it and adopts the pushed image, moving its
    # floating tags; without one it would recover from labels, which say nothing of
    # those tags. A run that pushed nothing leaves neither a lock nor a commit.
    created = options.push and not manifest.lock_path.exists()
    if created:
        write_lock(manifest.lock_path, recorder.lock)
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
    if created and not recorder.changed and not any(o.digest for o in runner.outcomes.values()):
        manifest.lock_path.unlink(missing_ok=True)  # nothing pushed: leave no empty lock
    if worktree is not None and options.push:
        outcome.commit, outcome.pushed = finish_git(
            worktree, manifest, plan, runner.outcomes, options, session, me or Me(), notes
        )
    elif options.git_push and worktree is None and options.git:
        raise GitOpsError(f"--git-push: {manifest.root_dir} is not in a git work tree")
    return outcome


def finish_git(
    worktree: Path,
    manifest: Manifest,
    plan: Plan,
    outcomes: dict[str, Outcome],
    options: ApplyOptions,
    session: GitSession | None,
    me: Me,
    notes: Sequence[str],
) -> tuple[str | None, bool]:
    """Release this run's claims, commit the lock, push under --git-push.

    A push refused because the remote moved (another runner's claim or record landed
    first) is retried on the remote's new state: this run's records are re-applied to
    the remote's lock, committed and pushed again, a bounded number of times.
    """
    lines = commit_lines(plan, outcomes)
    recorded = recorded_images(outcomes)
    released = [
        f"{a.image} {a.to_version}: claim released ({outcomes[a.image].state})"
        for a in plan.actions
        if a.image not in recorded and session is not None
    ]
    unrecorded = [
        f"{a.image} {a.to_version}: pushed, then failed; not recorded"
        for a in plan.actions
        if a.image not in recorded and outcomes[a.image].digest
    ]
    notes = [*released, *unrecorded, *notes]
    commit = session.commit if session is not None else plain_commit(worktree, options.author)
    for _ in range(MAX_ATTEMPTS):
        lock = read_lock(manifest.lock_path)
        if lock is not None and any(me.owns(c) for c in lock.claims.values()):
            write_lock(manifest.lock_path, without_mine(lock, me))
        sha = commit_lock(worktree, manifest, lines, commit, notes, keep_empty=bool(unrecorded))
        if not options.git_push or not gitops.unpushed(worktree):
            return sha, False
        if session is None:
            gitops.push(worktree)
            return sha, True
        ours = read_lock(manifest.lock_path) or Lock()
        if session.push():
            return sha, True
        write_lock(manifest.lock_path, rebase(read_lock(manifest.lock_path), ours, recorded, me))
    raise GitOpsError(
        f"git push from {worktree} was refused {MAX_ATTEMPTS} times: the remote keeps moving; "
        "the lock is committed locally (run `imagectl apply --git-push` again to push it)"
    )
