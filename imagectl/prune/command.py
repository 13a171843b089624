"""`imagectl prune`: read the registry and the lock, decide, show, and delete with --apply.

Three flat, concurrent phases keep the request count low: list the tags of every
image, HEAD every tag once (`resolve_many`), read the config of every version tag
(labels: created, base digest). Deleting is by digest, one DELETE per digest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagectl.domain.graph import ImageGraph
from imagectl.errors import RegistryError
from imagectl.labels import LABEL_BASE_DIGEST, LABEL_BASE_NAME, LABEL_CREATED, LABEL_REVISION
from imagectl.lockfile import Lock, read_lock
from imagectl.manifest.models import Manifest
from imagectl.platforms import read_config
from imagectl.prune.own_tags import own_tags
from imagectl.prune.policy import (
    LOCK_NOTE,
    Decision,
    VersionInfo,
    is_version_tag,
    parse_age,
    prune_images,
)
from imagectl.registry import Reference, RegistryClient, parse_reference
from imagectl.registry.settings import make_client
from imagectl.supply.attach import delete_attachments

_WORKERS = 8
DELETE_DISABLED_HINT = "storage.delete.enabled"


@dataclass
class PruneInventory:
    """What the registry and the lock say, per image."""

    versions: dict[str, list[VersionInfo]] = field(default_factory=dict)
    protected: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    base_protected: dict[str, list[str]] = field(default_factory=dict)


def _created(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _version_info(
    client: RegistryClient, ref: Reference, version: str, platforms: Sequence[str] = ()
) -> VersionInfo:
    assert ref.digest is not None
    config = read_config(client, ref, platforms)
    aliases = {config.manifest_digest, config.index_digest or ""} - {"", ref.digest}
    labels = config.labels
    return VersionInfo(
        version=version,
        digest=ref.digest,
        created=_created(labels.get(LABEL_CREATED)),
        base_digest=labels.get(LABEL_BASE_DIGEST) or None,
        aliases=frozenset(aliases),
        revision=labels.get(LABEL_REVISION) or None,
        base_name=labels.get(LABEL_BASE_NAME) or None,
    )


def observe_registry(
    manifest: Manifest, client: RegistryClient, lock: Lock | None
) -> PruneInventory:
    """Versions, floating tags and lock protections of every image of the manifest.

    A floating tag that only one version carries (see `own_tags`) is recorded on that
    version and goes with it; every other floating tag protects the digest it names.
    """
    observed = PruneInventory()
    repos = {name: parse_reference(image.repository) for name, image in manifest.images.items()}
    floating: dict[str, dict[str, str]] = {name: {} for name in repos}
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="imagectl-prune") as pool:
        tags = dict(zip(repos, pool.map(client.list_tags, repos.values()), strict=True))
        refs = {(name, tag): repos[name].with_tag(tag) for name in repos for tag in tags[name]}
        heads = client.resolve_many(refs.values())
        jobs = []
        for (name, tag), ref in refs.items():
            info = heads.get(ref)
            if info is None:
                continue  # deleted while we looked
            if is_version_tag(tag, manifest.images[name].bump):
                pinned = ref.with_digest(info.digest)
                platforms = manifest.images[name].platforms
                jobs.append((name, pool.submit(_version_info, client, pinned, tag, platforms)))
            else:
                floating[name][tag] = info.digest
        for name, future in jobs:
            observed.versions.setdefault(name, []).append(future.result())
    for name, found in observed.versions.items():
        image = manifest.images[name]
        own = own_tags(image.tags, image.bump, found, floating[name])
        observed.versions[name] = [replace(v, tags=own.get(v.version, ())) for v in found]
        taken = {tag for tags_ in own.values() for tag in tags_}
        for tag, digest in floating[name].items():
            if tag not in taken:
                observed.protected.setdefault(name, {}).setdefault(digest, []).append(f"tag {tag}")
    for name, record in (lock.images if lock else {}).items():
        reasons = observed.protected.setdefault(name, {}).setdefault(record.digest, [])
        reasons.insert(0, "in the lock")
        observed.base_protected.setdefault(record.base.digest, []).append(
            f"base of {name} {record.version} {LOCK_NOTE}"
        )
    return observed


def _descendants_first(manifest: Manifest) -> list[str]:
    graph = ImageGraph.build({name: image.base for name, image in manifest.images.items()})
    return list(reversed(graph.order()))


def _short(digest: str) -> str:
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}"


def decision_table(decisions: Mapping[str, list[Decision]], *, done: set[str]) -> Table:
    """One row per version: image, version, digest, created, action and why."""
    table = Table(header_style="bold")
    for column in ("image", "version", "digest", "created", "action", "why"):
        table.add_column(column, overflow="fold")
    for name in sorted(decisions):
        for decision in decisions[name]:
            info = decision.info
            action = "keep"
            if decision.delete:
                action = "deleted" if info.digest in done else "delete"
            created = info.created.strftime("%Y-%m-%d") if info.created else "-"
            table.add_row(
                name,
                info.version,
                _short(info.digest),
                created,
                action,
                escape("; ".join(decision.reasons)),
            )
    return table


def _delete_disabled(registry: str, deleted: int) -> RegistryError:
    so_far = "nothing was deleted" if not deleted else f"{deleted} digests were deleted first"
    return RegistryError(
        f"prune --apply: registry {registry} has deletion disabled ({so_far}). Set "
        "`storage.delete.enabled: true` in the registry's configuration "
        "(REGISTRY_STORAGE_DELETE_ENABLED=true for the registry container), restart it "
        "and run prune --apply again."
    )


def _delete(
    client: RegistryClient, manifest: Manifest, decisions: Mapping[str, list[Decision]]
) -> tuple[set[str], list[str]]:
    """DELETE each doomed digest once; stop at once when the registry forbids deleting."""
    done: set[str] = set()
    failures: list[str] = []
    for name in sorted(decisions):
        repo = parse_reference(manifest.images[name].repository)
        digests = dict.fromkeys(d.info.digest for d in decisions[name] if d.delete)
        for digest in digests:
            try:
                delete_attachments(client, repo, digest)  # its .sig/.att first: no orphans
                client.delete_manifest(repo.with_digest(digest))
            except RegistryError as exc:
                if DELETE_DISABLED_HINT in str(exc):
                    raise _delete_disabled(repo.registry, len(done)) from exc
                failures.append(f"{name} {_short(digest)}: {exc}")
                continue
            done.add(digest)
    return done, failures


def prune_command(
    manifest: Manifest,
    *,
    keep: int,
    older_than: str | None,
    apply: bool,
    now: datetime,
    console: Console,
    client: RegistryClient | None = None,
) -> int:
    """Registry retention: show what would go (dry run) or delete it (`apply`).

    Args:
        manifest: the loaded manifest; each of its images is pruned.
        keep: the newest versions of each image that always stay.
        older_than: ``90d``/``12w``/``36h``: only versions older than that may go.
        apply: delete; otherwise only show.
        now: the clock, for the age rule.
        console: where the table and summary go.
        client: the registry client (default: `pipeline.make_client()`).

    Returns:
        0 on success, 1 when a deletion failed.

    Raises:
        UsageError: `keep` or `older_than` is invalid.
        RegistryError: the registry could not be read, or refuses deletes (the message
            names ``storage.delete.enabled: true``).
    """
    age = parse_age(older_than) if older_than is not None else None
    own = client is None
    client = client if client is not None else make_client()
    try:
        with client.phase("prune's registry reads"):  # bounded by IMAGECTL_PHASE_DEADLINE
            observed = observe_registry(manifest, client, read_lock(manifest.lock_path))
        decisions = prune_images(
            observed.versions,
            [n for n in _descendants_first(manifest) if n in observed.versions],
            keep=keep,
            older_than=age,
            now=now,
            protected=observed.protected,
            base_protected=observed.base_protected,
        )
        doomed = {d.info.digest for ds in decisions.values() for d in ds if d.delete}
        kept = sum(1 for ds in decisions.values() for d in ds if not d.delete)
        to_go = sum(1 for ds in decisions.values() for d in ds if d.delete)
        if not apply or not doomed:
            if decisions:
                console.print(decision_table(decisions, done=set()))
            if not doomed:
                console.print(f"Nothing to prune: {kept} versions kept.")
            else:
                console.print(
                    f"Would delete {to_go} versions ({len(doomed)} digests), keep {kept}. "
                    "Dry run: pass --apply to delete."
                )
            return 0
        done, failures = _delete(client, manifest, decisions)
        console.print(decision_table(decisions, done=done))
        console.print(f"Deleted {len(done)} of {len(doomed)} digests; kept {kept} versions.")
        for failure in failures:
            console.print(f"[red]failed[/red]: {escape(failure)}")
        return 1 if failures else 0
    finally:
        if own:
            client.close()
