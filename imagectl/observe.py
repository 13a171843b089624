"""Observe the world for planning: the only place planning reads registry, lock, files and git.

Without `--refresh` and with a lock, the registry is asked only for the external
bases' digests (each distinct reference once, concurrently). With `--refresh` or
without a lock, `imagectl.recovery` asks the registry what was built.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagectl.errors import ImagectlError, RegistryError
from imagectl.explain import remember
from imagectl.filedigests import FileDigests
from imagectl.frontend import Directive, resolve_frontends, syntax_directive, syntax_directive_of
from imagectl.gitrev import head_revision_at
from imagectl.inputs import ContextHasher, image_inputs_digest
from imagectl.lockfile import Lock, read_lock
from imagectl.manifest.cache import enabled as cache_enabled
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import BuiltState, Observed
from imagectl.platforms import platform_digests
from imagectl.rebase.safety import rebase_problem
from imagectl.recovery import Refreshed, refresh_images
from imagectl.registry import RegistryClient, parse_reference


def image_inputs(
    manifest: Manifest,
    hasher: ContextHasher | None = None,
    frontends: dict[str, str] | None = None,
) -> dict[str, str]:
    """The inputs digest of every image (each distinct context hashed once).

    `frontends` maps an image to its pinned ``# syntax=`` frontend (`resolve_frontends`).
    """
    hasher = hasher or ContextHasher(manifest.root_dir)
    frontends = frontends or {}
    return {
        name: image_inputs_one(image, hasher, frontends.get(name))
        for name, image in manifest.images.items()
    }


def image_inputs_one(image: ImageConfig, hasher: ContextHasher, frontend: str | None = None) -> str:
    """The inputs digest of one image: context files, Dockerfile and build parameters."""
    context = hasher.context_digest(image.context, image.dockerfile, image.builder)
    return image_inputs_digest(context, image, frontend)


class DirectiveReader:
    """A Dockerfile's ``# syntax=`` directive, kept in the file cache by the sha256 of the
    Dockerfile's content: a plan whose Dockerfiles are unchanged (by stat, as their
    digests are taken) opens none of them. Found in the very bytes its digest is made
    of, so what is kept under a digest is always that content's directive."""

    def __init__(self, hasher: ContextHasher, cache: FileDigests) -> None:
        self.hasher = hasher
        self.cache = cache

    def __call__(self, dockerfile: Path) -> Directive:
        found, value = self.cache.note(_SYNTAX + self.hasher.dockerfile_digest(str(dockerfile)))
        if found and value is None:
            return None
        if found and isinstance(value, list) and len(value) == 2:
            text, line = value
            if isinstance(text, str) and type(line) is int:
                return text, line
        try:
            content = dockerfile.read_bytes()
        except OSError as exc:
            raise ImagectlError(
                f"cannot read Dockerfile {dockerfile}: {exc.strerror or exc}"
            ) from exc
        directive = syntax_directive_of(content)
        key = _SYNTAX + hashlib.sha256(content).hexdigest()
        self.cache.put_note(key, list(directive) if directive is not None else None)
        return directive


_SYNTAX = "syntax:"  # the file cache's notes of Dockerfile directives


def used_bases(manifest: Manifest) -> dict[str, str]:
    """External base key -> reference, for the bases some image is built on."""
    keys = {
        image.base for image in manifest.images.values() if not manifest.is_internal(image.base)
    }
    return {key: manifest.bases[key].ref for key in sorted(keys)}


def resolve_bases(manifest: Manifest, client: RegistryClient) -> dict[str, str]:
    """The current digest of every used external base; a pinned reference is its own digest."""
    refs = used_bases(manifest)
    wanted = {key: parse_reference(ref) for key, ref in refs.items()}
    to_fetch = [ref for ref in wanted.values() if ref.digest is None]
    found = client.resolve_many(to_fetch) if to_fetch else {}
    digests: dict[str, str] = {}
    for key, ref in wanted.items():
        if ref.digest is not None:
            digests[key] = ref.digest
            continue
        info = found.get(ref)
        if info is None:
            raise RegistryError(f"base '{key}': {ref} not found in the registry")
        digests[key] = info.digest
    return digests


def resolve_base_platforms(
    manifest: Manifest, client: RegistryClient, digests: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Platform -> image digest of each external base some image declares platforms on."""
    keys = {
        image.base
        for image in manifest.images.values()
        if image.platforms and not manifest.is_internal(image.base) and image.base in digests
    }
    found: dict[str, dict[str, str]] = {}
    for key in sorted(keys):
        pinned = parse_reference(manifest.bases[key].ref).with_digest(digests[key])
        found[key] = platform_digests(client, pinned)
    return found


def rebase_problems(manifest: Manifest) -> dict[str, str]:
    """Why each image whose `update:` may rebase cannot be ("" when it can)."""
    found: dict[str, str] = {}
    for name, image in manifest.images.items():
        if image.update == "build":
            continue
        try:
            text = image.dockerfile.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found[name] = f"cannot read {image.dockerfile}: {exc}"
            continue
        found[name] = rebase_problem(text, image.target, str(image.dockerfile)) or ""
    return found


def _from_lock(lock: Lock) -> dict[str, BuiltState]:
    """The last build of every image the lock records. The records' mappings are shared,
    not copied (10,000 images): nothing changes a BuiltState's mappings in place.

    Every field is given, from a validated record, so the frozen dataclass's __init__
    (one ``object.__setattr__`` per field) is skipped: the fields are set as one dict.
    """
    new = object.__new__
    built: dict[str, BuiltState] = {}
    for name, rec in lock.images.items():
        state: BuiltState = new(BuiltState)
        state.__dict__.update(
            version=rec.version,
            digest=rec.digest,
            base_ref=rec.base.ref,
            base_digest=rec.base.digest,
            inputs=rec.inputs,
            built_at=rec.built_at,
            tags=tuple(rec.tags),
            repository=rec.repository,
            revision=rec.revision or "",
            history=rec.versions,
            base_platforms=rec.base.platforms,
        )
        built[name] = state
    return built


def observe(
    manifest: Manifest,
    client: RegistryClient,
    *,
    refresh: bool = False,
    lock: Lock | None = None,
    workers: int = 16,
) -> Observed:
    """Gather every fact `make_plan` needs."""
    if lock is None:
        lock = read_lock(manifest.lock_path)
    built = _from_lock(lock) if lock is not None else {}
    listed = refresh or lock is None
    refreshed = Refreshed(built, frozenset(), {})
    with ThreadPoolExecutor(max_workers=1) as pool:
        bases_future = pool.submit(resolve_bases, manifest, client)
        if listed:
            refreshed = refresh_images(client, manifest.images.values(), built, workers)
        file_cache = FileDigests(manifest.root_dir) if cache_enabled() else None
        hasher = ContextHasher(manifest.root_dir, file_cache)
        directive = DirectiveReader(hasher, file_cache) if file_cache else syntax_directive
        frontends = resolve_frontends(
            manifest.images.values(), manifest.root_dir, client, directive
        )
        inputs = image_inputs(manifest, hasher, frontends)
        if file_cache is not None:
            file_cache.save()
        base_digests = bases_future.result()
    base_platforms = resolve_base_platforms(manifest, client, base_digests)
    revision = head_revision_at(manifest.root_dir)
    remember(manifest, hasher, inputs, frontends)  # only once all went well: for --explain
    return Observed(
        base_digests=base_digests,
        base_platforms=base_platforms,
        rebase_problems=rebase_problems(manifest),
        built=refreshed.built,
        inputs=inputs,
        missing=refreshed.missing,
        tag_drift=refreshed.drift,
        revision=revision,
        frontends=frontends,
        listed=listed,
    )
