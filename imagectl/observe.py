"""Observe the world for planning: the only place planning reads registry, lock, files and git.

Without `--refresh` and with a lock, the registry is asked only for the external
bases' digests (each distinct reference once, concurrently). With `--refresh` or
without a lock, each image's newest version tag and its labels recover what was
built, so a lost lock never causes a rebuild storm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from imagectl.errors import RegistryError
from imagectl.explain import remember
from imagectl.filedigests import FileDigests
from imagectl.frontend import resolve_frontends
from imagectl.gitrev import head_revision_at
from imagectl.inputs import ContextHasher, image_params, inputs_digest
from imagectl.labels import LABEL_BASE_DIGEST, LABEL_BASE_NAME, LABEL_CREATED, LABEL_INPUTS
from imagectl.lockfile import Lock, read_lock
from imagectl.manifest.cache import enabled as cache_enabled
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import BuiltState, Observed
from imagectl.plan.versions import version_key
from imagectl.registry import RegistryClient, parse_reference

_BUILT_VERSION = {
    "patch": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"),
    "revision": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)-r(0|[1-9]\d*)"),
}


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
    return inputs_digest(context, image_params(image, frontend))


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


def _from_lock(lock: Lock) -> dict[str, BuiltState]:
    return {
        name: BuiltState(
            version=rec.version,
            digest=rec.digest,
            base_ref=rec.base.ref,
            base_digest=rec.base.digest,
            inputs=rec.inputs,
            built_at=rec.built_at,
            tags=tuple(rec.tags),
        )
        for name, rec in lock.images.items()
    }


@dataclass(frozen=True)
class Recovered:
    """What the registry says about one image."""

    state: BuiltState | None
    newest_version: str | None


def _parse_created(text: str | None) -> datetime:
    if text:
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime(1970, 1, 1, tzinfo=UTC)


def recover_image(client: RegistryClient, image: ImageConfig) -> Recovered:
    """The newest version tag of `image` in the registry and the labels on it."""
    repo = parse_reference(image.repository)
    pattern = _BUILT_VERSION[image.bump]
    versions = [t for t in client.list_tags(repo) if pattern.fullmatch(t)]
    if not versions:
        return Recovered(None, None)
    newest = max(versions, key=version_key)
    config = client.image_config(repo.with_tag(newest))
    labels = config.labels
    state = BuiltState(
        version=newest,
        digest=config.index_digest or config.manifest_digest,
        base_ref=labels.get(LABEL_BASE_NAME, ""),
        base_digest=labels.get(LABEL_BASE_DIGEST, ""),
        inputs=labels.get(LABEL_INPUTS, ""),
        built_at=_parse_created(labels.get(LABEL_CREATED)),
        tags=(newest,),
    )
    return Recovered(state, newest)


def refresh_images(
    client: RegistryClient,
    images: Iterable[ImageConfig],
    built: dict[str, BuiltState],
    workers: int,
) -> tuple[dict[str, BuiltState], frozenset[str]]:
    """Recover state from the registry; flag recorded images whose immutable tag is gone."""
    images = list(images)
    result = dict(built)
    missing: set[str] = set()
    images, absent = _split_by_catalog(client, images, built)
    for image in absent:  # the registry has no such repository: nothing was built
        if image.name in built:
            missing.add(image.name)

    def one(image: ImageConfig) -> tuple[str, Recovered, str | None]:
        recovered = recover_image(client, image)
        recorded = built.get(image.name)
        current = None
        if recorded is not None and recovered.newest_version != recorded.version:
            info = client.head_manifest(
                parse_reference(image.repository).with_tag(recorded.version)
            )
            current = info.digest if info else None
        elif recorded is not None and recovered.state is not None:
            current = recovered.state.digest
        return image.name, recovered, current

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, recovered, current in pool.map(one, images):
            recorded = built.get(name)
            newer = recovered.state is not None and (
                recorded is None
                or version_key(recovered.state.version) > version_key(recorded.version)
            )
            if newer and recovered.state is not None:
                result[name] = recovered.state
            elif recorded is not None and current != recorded.digest:
                missing.add(name)
    return result, frozenset(missing)


def _split_by_catalog(
    client: RegistryClient, images: list[ImageConfig], built: dict[str, BuiltState]
) -> tuple[list[ImageConfig], list[ImageConfig]]:
    """(images to look up one by one, images whose repository does not exist).

    One catalog request per registry replaces a tags request per image of a
    repository that does not exist (a cold start); registries without a catalog
    are asked per image.
    """
    by_registry: dict[str, list[ImageConfig]] = {}
    refs = {}
    for image in images:
        ref = parse_reference(image.repository)
        refs[image.name] = ref
        by_registry.setdefault(ref.registry, []).append(image)
    lookup: list[ImageConfig] = []
    absent: list[ImageConfig] = []
    for group in by_registry.values():
        if len(group) < 2:  # a catalog costs at least one request: not worth it
            lookup.extend(group)
            continue
        catalog = client.list_repositories(refs[group[0].name])
        if catalog is None:
            lookup.extend(group)
            continue
        for image in group:
            (lookup if refs[image.name].repository in catalog else absent).append(image)
    return lookup, absent


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
    missing: frozenset[str] = frozenset()
    with ThreadPoolExecutor(max_workers=1) as pool:
        bases_future = pool.submit(resolve_bases, manifest, client)
        if refresh or lock is None:
            built, missing = refresh_images(client, manifest.images.values(), built, workers)
        frontends = resolve_frontends(manifest.images.values(), manifest.root_dir, client)
        file_cache = FileDigests(manifest.root_dir) if cache_enabled() else None
        hasher = ContextHasher(manifest.root_dir, file_cache)
        inputs = image_inputs(manifest, hasher, frontends)
        if file_cache is not None:
            file_cache.save()
        base_digests = bases_future.result()
    revision = head_revision_at(manifest.root_dir)
    remember(manifest, hasher, inputs, frontends)  # only once all went well: for --explain
    return Observed(
        base_digests=base_digests,
        built=built,
        inputs=inputs,
        missing=missing,
        revision=revision,
        frontends=frontends,
    )
