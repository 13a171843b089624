"""Claims: reserve the planned versions in git before pushing any image (`--git-push`).

The registry has no compare-and-swap: two runners that both find a version tag
free both push it, and the later push repoints it. Git has one: a push is refused
when the remote branch moved. So a run that pushes to git first commits a *claim*
(image, version, inputs, who, when) to the lock and pushes that commit; only the
runner whose claim landed builds the version. The other fetches, re-plans from the
new remote state, where the version is claimed, and leaves that image alone.

A claim is *live* while its run can still push: on this host, while its process
exists (and no longer than the TTL); from another host, for the TTL
(``IMAGECTL_CLAIM_TTL``, seconds, default 6 h). A claim that is not live was left by a
run that died; the next run drops it and plans as if it were absent (what that run
pushed, if anything, is then found in the registry like any crash's leftovers).

Pure functions on :class:`~imagectl.lockfile.Lock` and :class:`~imagectl.plan.model.Plan`
here; the git side is :class:`GitSession`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from imagectl import gitops
from imagectl.errors import GitOpsError, UsageError
from imagectl.lockfile import ClaimRecord, Lock
from imagectl.plan.model import Plan

CLAIM_TTL_ENV = "IMAGECTL_CLAIM_TTL"
DEFAULT_TTL = timedelta(hours=6)
MAX_ATTEMPTS = 3  # claim (or final) pushes tried before giving up on a remote that keeps moving


def claim_ttl(env: Mapping[str, str] | None = None) -> timedelta:
    """How long a claim from another host is honoured (``IMAGECTL_CLAIM_TTL`` seconds)."""
    raw = (os.environ if env is None else env).get(CLAIM_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_TTL
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{CLAIM_TTL_ENV}={raw!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Me:
    """Who this run is, as written into its claims."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def owns(self, claim: ClaimRecord) -> bool:
        return claim.host == self.host and claim.pid == self.pid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(
    claim: ClaimRecord,
    now: datetime,
    *,
    me: Me,
    ttl: timedelta,
    alive: Callable[[int], bool] = _pid_alive,
) -> bool:
    """Whether the run that made `claim` may still push (see the module doc)."""
    if now - claim.claimed_at >= ttl:
        return False
    if claim.host == me.host:
        return claim.pid != me.pid and alive(claim.pid)
    return True


@dataclass(frozen=True)
class Resolved:
    """The claims of a lock sorted out for one run."""

    lock: Lock  # the lock without the claims that are not live
    live: dict[str, ClaimRecord]
    dropped: dict[str, ClaimRecord]


def resolve(
    lock: Lock,
    now: datetime,
    *,
    me: Me,
    ttl: timedelta,
    alive: Callable[[int], bool] = _pid_alive,
) -> Resolved:
    """Split the lock's claims into live ones and ones left by dead runs (dropped)."""
    live = {n: c for n, c in lock.claims.items() if is_live(c, now, me=me, ttl=ttl, alive=alive)}
    dropped = {n: c for n, c in lock.claims.items() if n not in live}
    return Resolved(lock.model_copy(update={"claims": live}), live, dropped)


def withhold(plan: Plan, live: Mapping[str, ClaimRecord]) -> tuple[Plan, list[str]]:
    """Leave out the images another run has claimed, and every image built on them.

    Returns:
        The plan without them, and one line per image left out (why).
    """
    out: dict[str, str] = {}
    for action in plan.actions:  # parents first
        if action.image in live:
            claim = live[action.image]
            out[action.image] = (
                f"{action.image}: {claim.version} is claimed by pid {claim.pid} on {claim.host} "
                f"since {_stamp(claim.claimed_at)}; that run builds it"
            )
        elif any(parent in out for parent in action.depends_on):
            parent = next(p for p in action.depends_on if p in out)
            out[action.image] = f"{action.image}: waits for {parent}, claimed by another run"
    if not out:
        return plan, []
    kept = tuple(a for a in plan.actions if a.image not in out)
    return dataclasses.replace(plan, actions=kept), list(out.values())


def with_claims(lock: Lock, plan: Plan, now: datetime, *, me: Me, revision: str | None) -> Lock:
    """`lock` with a claim of this run for every planned action."""
    claims = dict(lock.claims)
    for action in plan.actions:
        claims[action.image] = ClaimRecord(
            version=action.to_version,
            inputs=action.inputs,
            host=me.host,
            pid=me.pid,
            claimed_at=now.replace(microsecond=0),
            revision=revision,
        )
    return lock.model_copy(update={"claims": claims})


def without_mine(lock: Lock, me: Me) -> Lock:
    """`lock` without this run's claims."""
    kept = {n: c for n, c in lock.claims.items() if not me.owns(c)}
    return lock.model_copy(update={"claims": kept})


def rebase(upstream: Lock | None, ours: Lock, recorded: set[str], me: Me) -> Lock:
    """This run's change re-applied on the lock the remote moved to.

    Args:
        upstream: The lock at the new remote head.
        ours: The lock this run wrote.
        recorded: The images this run recorded.
        me: This run (its claims are released).
    """
    lock = upstream or Lock()
    for name in sorted(recorded):
        if name in ours.images:
            lock = lock.with_image(name, ours.images[name])
    for name, base in ours.bases.items():
        lock = lock.with_base(name, base)
    return without_mine(lock, me)


def claim_lines(plan: Plan) -> list[str]:
    """The body of a claim commit: `name old -> new (reasons)`, as the rebuild commit."""
    return [
        f"{a.image} {a.from_version or '-'} -> {a.to_version} ({', '.join(a.reasons)})"
        for a in plan.actions
    ]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class GitSession:
    """This run's commits on the git-ops branch, and pushes that never force.

    When a push is refused because the remote moved, the run's own commits are
    dropped and the branch fast-forwarded to the remote (:func:`gitops.rewind_to_upstream`);
    the caller then re-applies its change on the new state and pushes again.
    """

    def __init__(self, worktree: Path, author: tuple[str, str] | None) -> None:
        self.worktree = worktree
        self.author = author
        self.ours: list[str] = []

    def commit(self, files: list[Path], title: str, lines: list[str]) -> str | None:
        sha = gitops.commit_files(
            self.worktree, files, gitops.commit_message(title, lines), self.author
        )
        if sha is not None:
            self.ours.append(sha)
        return sha

    def push(self) -> bool:
        """Push; False when the remote moved (the branch is then rewound to it).

        Raises:
            GitOpsError: The push failed for another reason, or the branch has commits
                of its own besides this run's (diverged: never merged, never forced).
        """
        before = gitops.head_revision(self.worktree)
        try:
            gitops.push(self.worktree)
            return True
        except GitOpsError as refused:
            # Whatever git said (non-fast-forward, or a ref lock lost to a concurrent
            # push), the remote moved exactly when its head is not under ours.
            tracking = gitops.fetch(self.worktree)
            if (
                tracking is None
                or before is None
                or gitops.is_ancestor(self.worktree, tracking, before)
            ):
                raise refused from None
        gitops.rewind_to_upstream(self.worktree, self.ours)
        self.ours = []
        return False
