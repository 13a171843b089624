"""The service layer: `plan` and `apply` take their collaborators and return results.

The collaborators are the loaded manifest, the registry (anything with the
`ports.Registry` interface), the builders (name -> `Builder`; a name the mapping
lacks comes from `get_builder`) and the git work tree. The lock is read once per
run attempt, by the run's `RunRecord` (imagectl/apply/run_record.py), which also
fixes the revision once: the HEAD the plan saw.

No console here. `commands.py` and `daemon.py` render the results and map them to
exit codes (`errors.ExitCode`); what a caller shows while a run goes (notes, each
step) comes through callbacks. Apply is two calls so that the caller can show the
plan before anything is built: `prepare` (plan, claims, checks) then `run`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from imagectl.errors import ExitCode, GitOpsError, PlanError
from imagectl.gcpause import paused_gc
from imagectl.lockfile import Lock, read_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.observe import observe
from imagectl.plan.model import Observed, Plan, PlanOptions
from imagectl.plan.plan import make_plan
from imagectl.recovery import settle

if TYPE_CHECKING:  # apply, git and builders stay out of the plan path (docs/commands.md)
    from imagectl.apply.claims import GitSession, Me
    from imagectl.apply.engine import ApplyOptions, ApplyResult
    from imagectl.apply.protocol import Step
    from imagectl.apply.run_record import RunRecord
    from imagectl.builders.base import Builder
    from imagectl.ports import Registry
    from imagectl.registry import RegistryClient


@dataclass(frozen=True)
class Planned:
    """A plan and what was observed to make it (None for a saved plan)."""

    plan: Plan
    observed: Observed | None = None
    lock: Lock | None = None  # the lock the plan was made from: the run's one read


def plan(
    manifest: Manifest,
    registry: Registry,
    *,
    now: datetime,
    options: PlanOptions,
    refresh: bool = False,
    lock: Lock | None = None,
) -> Planned:
    """Observe the registry and make the plan (its new version tags checked free); a
    plan with multi-platform images their builder cannot build is refused.

    `lock` is the lock as the caller read it; when None it is read here. Either way the
    result carries it, and the run's record starts from it: one read per run.
    """
    if lock is None:
        lock = read_lock(manifest.lock_path)
    client = _client(registry)
    with client.phase("planning"), paused_gc():  # bounded by the phase deadline; no cycles
        observed = observe(manifest, client, refresh=refresh, lock=lock)
        made, observed = settle(
            manifest, client, observed, lambda o: make_plan(manifest, o, now, options)
        )
    multi = [manifest.images[a.image] for a in made.actions]
    if any(len(image.platforms) > 1 for image in multi):
        # imported only when needed: the plan path stays free of the builders
        from imagectl.builders.capability import capability_problems

        problems = capability_problems(multi)
        if problems:
            raise PlanError("\n".join(problems))
    return Planned(made, observed, lock)


Planner = Callable[[Manifest], Planned]
"""Plans (again) for a manifest: after the remote moved, the manifest is re-read."""


@dataclass
class Prepared:
    """A plan ready to build: claimed under --git-push, checked, its revision fixed."""

    manifest: Manifest
    plan: Plan
    record: RunRecord
    options: ApplyOptions
    me: Me
    dirty: bool

    @property
    def revision(self) -> str | None:
        return self.record.revision


@dataclass
class Applied:
    """The outcome of an apply: its plan, the per-image result (None when nothing was
    left to build), and the record commit made."""

    plan: Plan
    result: ApplyResult | None = None
    commit: str | None = None
    pushed: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.result is None:
            return ExitCode.OK
        if self.result.interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.FAILED if self.result.failed else ExitCode.OK


def _client(registry: Registry) -> RegistryClient:
    # observe/, recovery.py and apply/protocol.py still name the concrete class; they call
    # only the methods of `ports.Registry`, so any implementation of it works there.
    return cast("RegistryClient", registry)


def prepare(
    manifest: Manifest,
    settings: ApplyOptions,
    *,
    first: Planned,
    replan: Planner,
    worktree: Path | None,
    note: Callable[[str], None] = lambda _: None,
) -> Prepared | Applied:
    """Resolve claims, check the inputs are committed, claim the plan in git.

    `worktree` is the git work tree of the manifest (None outside git). Under
    --git-push a claim refused because the remote moved re-plans with `replan` on the
    re-read manifest (a saved plan is refused instead). Returns `Applied` when there is
    nothing to build (the lock is still committed when it differs from HEAD).

    Raises:
        GitOpsError: the inputs are not committed, the remote moved too often, or a
            saved plan met a remote that moved.
    """
    from imagectl import gitops
    from imagectl.apply.claims import MAX_ATTEMPTS, GitSession, Me, claim_ttl, resolve, withhold
    from imagectl.apply.provenance import check_committed
    from imagectl.apply.run_record import RemoteMoved, run_revision_of

    push = settings.push
    target = worktree if settings.git and push else None
    session = GitSession(target, settings.author) if target and settings.git_push else None
    if session is not None:
        gitops.check_pushable(session.worktree)  # before any claim is committed
    me = Me()
    planned = first
    for _ in range(MAX_ATTEMPTS):
        record = _record(manifest, settings, target, session, planned.lock)
        resolved = resolve(record.lock, datetime.now(UTC), me=me, ttl=claim_ttl())
        made, withheld = withhold(planned.plan, resolved.live)
        dirty = check_committed(
            worktree, manifest, made, allow_dirty=settings.allow_dirty or not push
        )
        head = made.revision or (gitops.head_revision(worktree) if worktree else None)
        record.revision = run_revision_of(head, dirty)  # fixed once: tags, labels, lock
        if push:
            record.drop_dead_claims(resolved)
        if push and planned.observed is not None:
            found = record.recover(made, planned.observed)
            if found:
                note(f"Found {found} image(s) in the registry that the lock lacks.")
        for line in withheld:
            note(f"Left out: {line}")
        try:
            if not made.actions:
                return _settle(made, record if push else None)
            if record.claim(made, me):
                options = dataclasses.replace(settings, dirty=dirty, revision=record.revision)
                _check_keys(manifest, made, push)
                return Prepared(manifest, made, record, options, me, dirty)
        except RemoteMoved:
            pass
        if settings.saved:
            raise GitOpsError(
                "the remote branch moved since the saved plan was made; the branch is "
                "now at the remote's head: run `imagectl plan --out` again"
            )
        note("The remote branch moved: re-planning from its new state.")
        manifest = load_manifest(manifest.root)
        planned = replan(manifest)
    raise GitOpsError(
        f"the remote branch moved {MAX_ATTEMPTS} times while claiming the plan; "
        "nothing was built or pushed: re-run later"
    )


def _record(
    manifest: Manifest,
    settings: ApplyOptions,
    worktree: Path | None,
    session: GitSession | None,
    lock: Lock | None,
) -> RunRecord:
    from imagectl.apply.run_record import RunRecord

    return RunRecord(
        manifest,
        lock=lock,
        worktree=worktree,
        author=settings.author,
        session=session,
        git_push=settings.git_push,
    )


def _settle(made: Plan, record: RunRecord | None) -> Applied:
    """Nothing to build: commit (and push) what the lock holds that git lacks."""
    if record is None:
        return Applied(made)
    commit, pushed = record.settle()
    return Applied(made, commit=commit, pushed=pushed)


def _check_keys(manifest: Manifest, made: Plan, push: bool) -> None:
    if push:  # a key that cannot be read fails before anything is built
        from imagectl.supply.preflight import check_keys

        check_keys(manifest, (a.image for a in made.actions))


def run(
    prepared: Prepared,
    registry: Registry,
    *,
    builders: Mapping[str, Builder] | None = None,
    on_step: Step | None = None,
    stop: threading.Event | None = None,
) -> Applied:
    """Build, push, verify, tag and record the prepared plan; one record commit."""
    from imagectl.apply.engine import apply_plan

    result = apply_plan(
        prepared.manifest,
        prepared.plan,
        _client(registry),
        prepared.options,
        on_step=on_step,
        stop=stop,
        record=prepared.record,
        me=prepared.me,
        builders=builders,
    )
    return Applied(prepared.plan, result, result.commit, result.pushed)


__all__ = [
    "Applied",
    "Planned",
    "Planner",
    "Prepared",
    "plan",
    "prepare",
    "run",
]
