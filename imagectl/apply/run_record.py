"""One owner for the record of one apply run: the lock and git (docs/design.md section 10).

`RunRecord` reads the lock once, holds the run's revision (fixed once: the HEAD the
plan saw), and makes every write and commit of the run:

- dead claims dropped, this run's claims committed (under --git-push only: the claim
  commit, pushed before any image is);
- images the registry's labels show built elsewhere (`found`), kept in memory until
  the run records: they go into the same commit as the run's own images;
- the journal recorder of the run (`recorder`), then exactly one record commit naming
  every image recorded, `name old -> new (reasons)`, and the push.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import git

from imagectl import gitops
from imagectl.apply.claims import (
    MAX_ATTEMPTS,
    GitSession,
    Me,
    Resolved,
    claim_lines,
    rebase,
    with_claims,
    without_mine,
)
from imagectl.apply.protocol import Outcome, fault_point
from imagectl.apply.provenance import DIRTY_SUFFIX, clean_revision
from imagectl.apply.record import LockRecorder
from imagectl.domain.versions import version_key
from imagectl.errors import GitOpsError
from imagectl.lockfile import ImageRecord, Lock, compact_journal, read_lock, write_lock
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Observed, Plan
from imagectl.plan.plan import current_floating_tags
from imagectl.recovery import record_of

Commit = Callable[[list[Path], str, list[str]], str | None]
"""Commit these files with this title and body lines; returns the sha (None: no change)."""

FOUND = "recovered from the registry"


class RemoteMoved(GitOpsError):
    """The git push was refused because the remote moved; the branch is rewound to it."""

    def __init__(self) -> None:
        super().__init__("the remote branch moved; re-plan from its new state")


def plain_commit(worktree: Path, author: tuple[str, str] | None) -> Commit:
    """A :data:`Commit` straight to the work tree's branch."""

    def commit(files: list[Path], title: str, lines: list[str]) -> str | None:
        return gitops.commit_files(worktree, files, gitops.commit_message(title, lines), author)

    return commit


def run_revision_of(head: str | None, dirty: bool) -> str | None:
    """The run's revision: `head` (the HEAD the plan saw), `-dirty` when inputs differ."""
    if head is None:
        return None
    return head + DIRTY_SUFFIX if dirty else head


def recorded_images(outcomes: Mapping[str, Outcome]) -> set[str]:
    """The images this run recorded in the lock (built or adopted)."""
    return {n for n, o in outcomes.items() if o.state in ("built", "adopted") and o.digest}


def commit_lines(plan: Plan, outcomes: Mapping[str, Outcome]) -> list[str]:
    """One line per recorded image: `name old -> new (reasons)`; `-` for no old version,
    as in the plan table (`core - -> 0.1.0 (new)`)."""
    done = recorded_images(outcomes)
    return [line for line in claim_lines(plan) if _name(line) in done]


CLAIM_TITLE = "imagectl: claim "


def uncommitted_revisions(worktree: Path) -> set[str]:
    """HEAD, and the commits before it back to the first that is not a claim commit.

    A record carries the revision its run fixed (the HEAD its plan saw); under
    --git-push that run's claim commit follows it before anything is recorded. A claim
    commit holds claims only, so a record at any of these revisions is not committed.
    """
    try:
        repo = git.Repo(worktree)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return set()
    try:
        commit = repo.head.commit
        revisions = {commit.hexsha}
        while str(commit.message).startswith(CLAIM_TITLE) and commit.parents:
            commit = commit.parents[0]
            revisions.add(commit.hexsha)
        return revisions
    except ValueError:  # no commit yet
        return set()
    finally:
        repo.close()


def pending_lines(lock: Lock | None, heads: set[str], done: set[str]) -> list[str]:
    """Lines for images recorded at one of `heads` but not by this run: what a killed
    apply left (see `uncommitted_revisions`).

    A record carries the git-ops revision it was built at; once committed, HEAD moves
    past it (by more than claim commits). So a record whose revision is still HEAD is
    not committed yet.
    """
    lines = []
    for name, record in sorted((lock.images if lock else {}).items()):
        if name in done or clean_revision(record.revision) not in heads:
            continue
        lines.append(
            f"{name} {_previous(record)} -> {record.version} (recorded by an interrupted apply)"
        )
    return lines


def _previous(record: ImageRecord | None) -> str:
    """The newest version before `record`'s, `-` when none."""
    if record is None:
        return "-"
    older = [v for v in record.versions if version_key(v) < version_key(record.version)]
    return max(older, key=version_key) if older else "-"


def found_records(
    manifest: Manifest, lock: Lock, plan: Plan, observed: Observed
) -> tuple[dict[str, ImageRecord], list[str]]:
    """What the registry's labels say was built and the lock lacks: records and lines.

    A lost lock (or one behind the registry, e.g. after a fan-out's level runners built
    with --no-git) is restored from the images' labels: the revision they carry, and
    the version tag plus the floating tags the build carries (its tags are checked by
    the plan: a drifted one makes a retag action instead). An image whose floating tags
    must be put back is recorded by its action instead, once they are.
    """
    records: dict[str, ImageRecord] = {}
    lines: list[str] = []
    retag = {a.image for a in plan.actions if a.retag_only}
    for name, state in sorted(observed.built.items()):
        image = manifest.images.get(name)
        known = lock.images.get(name)
        if image is None or name in retag or (known is not None and known.digest == state.digest):
            continue
        record = record_of(state)
        if name not in observed.tag_drift:
            floating = [t.name for t in current_floating_tags(image, state)]
            record = record.model_copy(update={"tags": [state.version, *floating]})
        records[name] = record
        lines.append(f"{name} {_previous_of(known)} -> {state.version} ({FOUND})")
    return records, lines


def _name(line: str) -> str:
    """The image a commit line names (its first word)."""
    return line.split(" ", 1)[0]


def _previous_of(known: ImageRecord | None) -> str:
    return known.version if known is not None else "-"


class RunRecord:
    """The lock and git of one apply run; the lock is read once, here.

    Args:
        manifest: The loaded manifest (where the lock is).
        worktree: The git work tree the run commits to; None: no commit (--no-git,
            --no-push, or outside git).
        author: The commit author (`--author`), or None for git's own identity.
        session: The run's git session under --git-push (claims pushed first), or None.
        git_push: Push the record commit (--git-push).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        worktree: Path | None = None,
        author: tuple[str, str] | None = None,
        session: GitSession | None = None,
        git_push: bool = False,
        lock: Lock | None = None,
    ) -> None:
        self.manifest = manifest
        self.path = manifest.lock_path
        self.worktree = worktree
        self.author = author
        self.session = session
        self.git_push = git_push
        self.existed = self.path.exists()
        # the lock the plan was made from (the run's one read), else read now
        self.lock: Lock = lock if lock is not None else (read_lock(self.path) or Lock())
        self.revision: str | None = None
        self.found: dict[str, ImageRecord] = {}
        self.found_lines: list[str] = []
        self.notes: list[str] = []

    @property
    def commit(self) -> Commit | None:
        if self.session is not None:
            return self.session.commit
        return plain_commit(self.worktree, self.author) if self.worktree is not None else None

    def _write(self, lock: Lock) -> None:
        write_lock(self.path, lock)
        self.lock = lock
        self.existed = True

    def recover(self, plan: Plan, observed: Observed) -> int:
        """Keep what the registry says was built and the lock lacks (written by `recorder`
        or `settle`, committed with the run's own records). Returns how many."""
        self.found, self.found_lines = found_records(self.manifest, self.lock, plan, observed)
        return len(self.found)

    def drop_dead_claims(self, resolved: Resolved) -> None:
        """Write the lock without claims left by runs that died; one note per claim."""
        if not resolved.dropped:
            return
        self._write(resolved.lock)
        self.notes += [
            f"{name} {claim.version}: claim of pid {claim.pid} on {claim.host} dropped "
            "(its run ended without recording it)"
            for name, claim in sorted(resolved.dropped.items())
        ]

    def claim(self, plan: Plan, me: Me) -> bool:
        """Commit and push this run's claims; False when the remote moved (re-plan)."""
        if self.session is None:
            return True
        claimed = with_claims(self.lock, plan, datetime.now(UTC), me=me, revision=self.revision)
        self._write(claimed)
        count = len(plan.actions)
        title = f"{CLAIM_TITLE}{count} image{'s' if count != 1 else ''}"
        self.session.commit([self.path], title, [*claim_lines(plan), *self.notes])
        self.notes.clear()  # said in the claim commit
        return self.session.push()

    def _with_found(self) -> None:
        if self.found:
            lock = self.lock
            for name, record in self.found.items():
                lock = lock.with_image(name, record)
            self._write(lock)

    def recorder(self, *, push: bool) -> LockRecorder:
        """The journal recorder of the run, on the lock with what was found in the registry.

        The lock exists before anything is pushed (under `push`): an apply that dies or
        fails after a push leaves a lock, so the next plan reads it and adopts the pushed
        image, moving its floating tags; without one it would recover from labels, which
        say nothing of those tags.
        """
        self._with_found()
        if push and not self.existed:
            self._write(self.lock)
            self.existed = False  # created by this run: removed when nothing was pushed
        return LockRecorder(self.path, self.lock)

    def finished(self, recorder: LockRecorder, *, pushed_any: bool) -> None:
        """Take the recorder's lock; remove a lock this run created and left empty."""
        self.lock = recorder.lock
        if not self.existed and not recorder.changed and not pushed_any and not self.found:
            self.path.unlink(missing_ok=True)  # nothing pushed: leave no empty lock

    def settle(self) -> tuple[str | None, bool]:
        """Nothing to build: write what was found; commit the lock when it differs from
        HEAD and, under --git-push, push whenever the branch is ahead.

        Raises:
            RemoteMoved: The push was refused (the session is rewound; re-plan).
        """
        self._with_found()
        if self.worktree is None:
            return None, False
        sha = self._commit([], list(self.notes))
        if not self.git_push or not gitops.unpushed(self.worktree):
            return sha, False
        if self.session is None:
            gitops.push(self.worktree)
            return sha, True
        if not self.session.push():
            raise RemoteMoved()
        return sha, True

    def finish(
        self, plan: Plan, outcomes: Mapping[str, Outcome], me: Me
    ) -> tuple[str | None, bool]:
        """Release this run's claims, make the run's one record commit, push under --git-push.

        A push refused because the remote moved (another runner's claim or record landed
        first) is retried on the remote's new state: this run's records are re-applied to
        the remote's lock, committed and pushed again, a bounded number of times.
        """
        worktree = self.worktree
        if worktree is None:
            return None, False
        lines = commit_lines(plan, outcomes)
        recorded = recorded_images(outcomes) | set(self.found)
        released = [
            f"{a.image} {a.to_version}: claim released ({outcomes[a.image].state})"
            for a in plan.actions
            if a.image not in recorded and self.session is not None
        ]
        unrecorded = [
            f"{a.image} {a.to_version}: pushed, then failed; not recorded"
            for a in plan.actions
            if a.image not in recorded and outcomes[a.image].digest
        ]
        notes = [*released, *unrecorded, *self.notes]
        for _ in range(MAX_ATTEMPTS):
            if any(me.owns(c) for c in self.lock.claims.values()):
                self._write(without_mine(self.lock, me))
            sha = self._commit(lines, notes, keep_empty=bool(unrecorded))
            if not self.git_push or not gitops.unpushed(worktree):
                return sha, False
            if self.session is None:
                gitops.push(worktree)
                return sha, True
            ours = self.lock
            if self.session.push():
                return sha, True
            self._write(rebase(read_lock(self.path), ours, recorded, me))  # the remote's lock
        raise GitOpsError(
            f"git push from {worktree} was refused {MAX_ATTEMPTS} times: the remote keeps "
            "moving; the lock is committed locally (run `imagectl apply --git-push` again "
            "to push it)"
        )

    def _commit(
        self, lines: list[str], notes: Sequence[str], *, keep_empty: bool = False
    ) -> str | None:
        """The run's one record commit: the lock, whenever it differs from HEAD's.

        Whether this run recorded anything does not matter: an apply killed between
        writing the lock and committing it leaves the lock ahead of git, and the next
        apply, even one with nothing to do, must commit it. A lock that records nothing
        (no image, no claim) is never committed: a failed first apply leaves no commit.
        `keep_empty`: commit even a lock that records nothing yet (an image was pushed
        but not recorded: other clones must adopt it, not recover it from labels).
        """
        worktree, commit = self.worktree, self.commit
        assert worktree is not None and commit is not None
        if compact_journal(self.path):  # records a killed run journalled, not yet in the lock
            self.lock = read_lock(self.path) or Lock()
        if not gitops.is_dirty(worktree, [self.path]) or not self.path.exists():
            return None
        lock = self.lock
        empty = not (lock.images or lock.claims or keep_empty)
        if empty and not gitops.is_tracked(worktree, self.path):
            return None  # nothing recorded, nothing pushed: no commit
        heads = uncommitted_revisions(worktree)
        built = {_name(line) for line in lines}  # a found image this run rebuilt: its own line
        found = [line for line in self.found_lines if _name(line) not in built]
        pending = pending_lines(lock, heads, built | {_name(line) for line in found})
        every = [*lines, *pending, *found]
        count = len(every)
        plural = "s" if count != 1 else ""
        if lines or pending:
            title = f"imagectl: rebuild {count} image{plural}"
        elif found:
            title = f"imagectl: record {count} image{plural} found in the registry"
        else:  # claims released, or records HEAD has moved past
            title = "imagectl: update the lock"
        fault_point("*", "commit")
        return commit([self.path], title, [*every, *notes])


__all__ = [
    "Commit",
    "RemoteMoved",
    "RunRecord",
    "commit_lines",
    "found_records",
    "pending_lines",
    "plain_commit",
    "recorded_images",
    "run_revision_of",
]
