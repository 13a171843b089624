"""`imagectl bases check|update`: pinned external bases, updated as reviewed commits.

A base pinned in the manifest (``ref: host/repo:tag@sha256:…``) is built from that
digest until the manifest says otherwise. `bases check` tells which pins are behind
their tag (exit 2); `bases update` rewrites those digests in the file that declares
them, touching nothing but the digest characters, and with ``--commit`` commits
the changed files in one commit. Bases without a digest are followed by tag at
every plan and are reported as ``followed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagectl import gitops
from imagectl.domain.reference import without_digest
from imagectl.errors import ExitCode, GitOpsError, RegistryError
from imagectl.manifest.loader import display_path
from imagectl.manifest.models import Manifest
from imagectl.manifest.writer import DigestChange, read_text, rewrite_digests, write_atomic
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.settings import make_client

State = Literal["current", "behind", "followed", "digest-only"]
EXIT_BEHIND = ExitCode.CHANGES  # `bases check`: a pin is behind its tag


@dataclass(frozen=True)
class BaseStatus:
    """A declared external base and how its pin compares with its tag now.

    Attributes:
        name: the key under ``bases:`` (or the reference itself for a literal ``from:``).
        ref: the reference as written in the manifest.
        state: ``current``, ``behind``, ``followed`` (no digest) or ``digest-only`` (no tag).
        pinned: the digest written in the manifest, None when followed.
        latest: the digest the tag points at now, None when not looked up.
    """

    name: str
    ref: str
    state: State
    pinned: str | None = None
    latest: str | None = None


def short(digest: str | None) -> str:
    """``sha256:0123456789ab`` (12 hex digits), ``-`` for None."""
    if digest is None:
        return "-"
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}"


def base_statuses(manifest: Manifest, client: RegistryClient) -> list[BaseStatus]:
    """Every external base of the manifest; pinned ones with a tag are resolved (one HEAD each).

    Raises:
        RegistryError: a pinned base's tag does not exist, or the registry failed.
    """
    refs = {name: parse_reference(base.ref) for name, base in manifest.bases.items()}
    wanted = [r.by_tag for r in refs.values() if r.digest is not None and r.tag is not None]
    found = client.resolve_many(wanted)
    statuses = []
    for name, ref in sorted(refs.items()):
        written = manifest.bases[name].ref
        if ref.digest is None:
            statuses.append(BaseStatus(name, written, "followed"))
            continue
        if ref.tag is None:
            statuses.append(BaseStatus(name, written, "digest-only", ref.digest))
            continue
        info = found.get(ref.by_tag)
        if info is None:
            raise RegistryError(
                f"base '{name}': {ref.by_tag} not found in the registry; "
                "fix the tag or remove the pin"
            )
        state: State = "current" if info.digest == ref.digest else "behind"
        statuses.append(BaseStatus(name, written, state, ref.digest, info.digest))
    return statuses


def status_table(statuses: list[BaseStatus]) -> Table:
    """One row per base: name, reference by tag, state, pinned and latest digest."""
    table = Table(header_style="bold")
    for column in ("base", "reference", "state", "pinned", "latest"):
        table.add_column(column, overflow="fold")
    for status in statuses:
        shown = without_digest(status.ref)
        table.add_row(
            escape(status.name),
            escape(shown),
            status.state,
            short(status.pinned),
            short(status.latest),
        )
    return table


@contextmanager
def _using(client: RegistryClient | None) -> Iterator[RegistryClient]:
    """The caller's client, or one of our own that is closed afterwards; its registry
    requests bounded by the phase deadline (IMAGECTL_PHASE_DEADLINE)."""
    if client is not None:
        with client.phase("bases"):
            yield client
        return
    with make_client() as own, own.phase("bases"):
        yield own


def bases_check_command(
    manifest: Manifest, *, console: Console, client: RegistryClient | None = None
) -> int:
    """Compare every pinned base with its tag.

    Args:
        manifest: the loaded manifest.
        console: where the table and summary go.
        client: the registry client (default: `pipeline.make_client()`).

    Returns:
        2 when a pinned base is behind its tag, else 0 (followed bases never count).
    """
    with _using(client) as active:
        statuses = base_statuses(manifest, active)
    if statuses:
        console.print(status_table(statuses))
    behind = [s.name for s in statuses if s.state == "behind"]
    if behind:
        names = ", ".join(behind)
        console.print(
            f"{len(behind)} pinned base{'s' if len(behind) != 1 else ''} behind: {names}. "
            "Run `imagectl bases update` to move the pins."
        )
        return EXIT_BEHIND
    console.print(current_summary(statuses))
    return 0


def current_summary(statuses: list[BaseStatus], *, update: bool = False) -> str:
    """The closing line when no pin is behind; says so plainly when nothing is pinned."""
    pinned = sum(1 for s in statuses if s.pinned is not None)
    tail = "; nothing to update." if update else "."
    if not statuses:
        return f"No external bases are declared{tail}"
    if not pinned:
        return (
            f"No pinned bases: every base follows its tag{tail} "
            "Pin one with `ref: host/repo:tag@sha256:…`."
        )
    if pinned == 1:
        return f"The pinned base is current{tail}"
    return f"All {pinned} pinned bases are current{tail}"


def plan_rewrites(
    manifest: Manifest, statuses: list[BaseStatus]
) -> dict[Path, tuple[str, list[DigestChange]]]:
    """The new text of every manifest file a behind base is declared in, with its changes."""
    updates = {s.ref: s.latest for s in statuses if s.state == "behind" and s.latest}
    rewrites: dict[Path, tuple[str, list[DigestChange]]] = {}
    for path in manifest.files:
        display = display_path(path, manifest.root_dir)
        text, changes = rewrite_digests(read_text(path), updates, display)
        if changes:
            rewrites[path] = (text, changes)
    return rewrites


def commit_title_and_lines(statuses: list[BaseStatus]) -> tuple[str, list[str]]:
    """The commit message parts: a title and ``base old -> new`` per moved base."""
    moved = [s for s in statuses if s.state == "behind"]
    title = "imagectl: update pinned base" + ("s" if len(moved) != 1 else "")
    title += " " + ", ".join(s.name for s in moved)
    return title, [f"{s.name} {short(s.pinned)} -> {short(s.latest)}" for s in moved]


def bases_update_command(
    manifest: Manifest,
    *,
    commit: bool,
    console: Console,
    client: RegistryClient | None = None,
) -> int:
    """Move every pinned base that is behind its tag to the tag's current digest.

    Args:
        manifest: the loaded manifest; the files that declare the bases are rewritten
            in place (only the digest characters change; written atomically).
        commit: commit the changed files, one commit listing ``base old -> new``.
        console: where the table and summary go.
        client: the registry client (default: `pipeline.make_client()`).

    Returns:
        0 (also when every pin is current).

    Raises:
        RegistryError: a pinned tag is missing, or the registry failed.
        ManifestError: a reference cannot be rewritten in place.
        GitOpsError: with `commit`: not in a git work tree, a file to change has
            uncommitted changes, or the commit failed. Nothing is written then.
    """
    with _using(client) as active:
        statuses = base_statuses(manifest, active)
    rewrites = plan_rewrites(manifest, statuses)
    if not rewrites:
        console.print(current_summary(statuses, update=True))
        return 0
    worktree = None
    if commit:
        worktree = gitops.find_worktree(manifest.root_dir)
        if worktree is None:
            raise GitOpsError(f"{manifest.root_dir} is not in a git work tree; drop --commit")
        if gitops.is_dirty(worktree, list(rewrites)):
            names = ", ".join(display_path(p, manifest.root_dir) for p in rewrites)
            raise GitOpsError(
                f"{names} has uncommitted changes; commit or stash them first "
                "(bases update --commit commits only its own change)"
            )
    table = Table(header_style="bold")
    for column in ("base", "where", "old", "new"):
        table.add_column(column, overflow="fold")
    for path, (text, changes) in rewrites.items():
        write_atomic(path, text)
        display = display_path(path, manifest.root_dir)
        for change in changes:
            name = change.site.path[1] if change.site.path[0] == "bases" else change.site.value
            where = f"{display}:{change.site.line}"
            table.add_row(
                escape(name), escape(where), short(change.old_digest), short(change.new_digest)
            )
    console.print(table)
    moved = sum(len(changes) for _, changes in rewrites.values())
    console.print(f"Updated {moved} pinned reference{'s' if moved != 1 else ''}.")
    if worktree is not None:
        title, lines = commit_title_and_lines(statuses)
        sha = gitops.commit_files(worktree, list(rewrites), gitops.commit_message(title, lines))
        if sha:
            console.print(f"Committed {sha[:12]}: {escape(title)}")
    return 0
