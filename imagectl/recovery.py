"""What the registry says was built: recovery from labels, drifted tags, taken versions.

The registry is the truth about where images live; the lock is its cache.

- `refresh_images` (`--refresh`, or no lock): each image's newest version tag and
  its labels recover what was built, so a lost lock never causes a rebuild storm;
  a recorded immutable tag that is gone is `missing`; a floating tag of the
  current build deleted or moved by hand is `tag-missing` / `tag-moved`.
- `settle`: a plan's new version tags must be free. One HEAD per action that
  builds; a tag held by one of our builds means the lock is behind the registry:
  that image's state is recovered as `--refresh` would, and the plan is made again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from imagectl.domain.versions import version_key
from imagectl.labels import (
    LABEL_BASE_DIGEST,
    LABEL_BASE_NAME,
    LABEL_CREATED,
    LABEL_INPUTS,
    LABEL_REVISION,
    LABEL_VERSION,
)
from imagectl.lockfile import BaseRecord, ImageRecord
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import BuiltState, Observed, Plan, StaleReason
from imagectl.plan.plan import current_floating_tags
from imagectl.platforms import read_config
from imagectl.registry import RegistryClient, parse_reference

_BUILT_VERSION = {
    "patch": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"),
    "revision": re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)-r(0|[1-9]\d*)"),
}


def is_version_tag(tag: str) -> bool:
    """Whether `tag` has the shape of an immutable version tag (`1.4.2`, `3.12.7-r1`)."""
    return any(p.fullmatch(tag) for p in _BUILT_VERSION.values())


def _parse_created(text: str | None) -> datetime:
    if text:
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime(1970, 1, 1, tzinfo=UTC)


def state_from_labels(
    image: ImageConfig,
    version: str,
    digest: str,
    labels: Mapping[str, str],
    history: Mapping[str, str] | None = None,
) -> BuiltState:
    """The build state that an image's labels describe (docs/design.md section 5)."""
    return BuiltState(
        version=version,
        digest=digest,
        base_ref=labels.get(LABEL_BASE_NAME, ""),
        base_digest=labels.get(LABEL_BASE_DIGEST, ""),
        inputs=labels.get(LABEL_INPUTS, ""),
        built_at=_parse_created(labels.get(LABEL_CREATED)),
        tags=(version,),
        repository=image.repository,
        revision=labels.get(LABEL_REVISION, ""),
        history={**(history or {}), version: digest},
    )


def record_of(state: BuiltState) -> ImageRecord:
    """The lock record of a build the registry holds, with the revision its labels carry.

    A build made elsewhere (another runner of a fan-out, a clone whose lock was lost)
    keeps the git-ops commit it was built from, so its provenance and lock agree.
    """
    return ImageRecord(
        repository=state.repository,
        version=state.version,
        digest=state.digest,
        tags=list(state.tags),
        base=BaseRecord(ref=state.base_ref, digest=state.base_digest),
        inputs=state.inputs,
        built_at=state.built_at,
        revision=state.revision or None,
    )


def is_our_build(labels: Mapping[str, str], version: str) -> bool:
    """Whether an image with `labels` is an imagectl build of `version`."""
    return labels.get(LABEL_VERSION) == version and LABEL_INPUTS in labels


@dataclass(frozen=True)
class Recovered:
    """What the registry says about one image: its newest build and every version tag."""

    state: BuiltState | None
    newest_version: str | None
    history: dict[str, str]  # every version tag of the repository -> "" (digest unknown)


def recover_image(client: RegistryClient, image: ImageConfig) -> Recovered:
    """The newest version tag of `image` in the registry and the labels on it."""
    repo = parse_reference(image.repository)
    tags = client.list_tags(repo)
    history = {t: "" for t in tags if is_version_tag(t)}
    pattern = _BUILT_VERSION[image.bump]
    versions = [t for t in tags if pattern.fullmatch(t)]
    if not versions:
        return Recovered(None, None, history)
    newest = max(versions, key=version_key)
    config = read_config(client, repo.with_tag(newest), image.platforms)
    digest = config.index_digest or config.manifest_digest
    state = state_from_labels(image, newest, digest, config.labels, history)
    return Recovered(state, newest, history)


def tag_drift(
    client: RegistryClient, image: ImageConfig, state: BuiltState
) -> tuple[StaleReason, ...]:
    """`tag-missing` / `tag-moved` when floating tags of the current build are not on it.

    A tag held by a newer build is not drift (floating tags move forward only).
    """
    repo = parse_reference(image.repository)
    reasons: set[StaleReason] = set()
    older = {
        d for v, d in state.history.items() if d and version_key(v) < version_key(state.version)
    }
    for tag in current_floating_tags(image, state):
        info = client.head_manifest(repo.with_tag(tag.name))
        if info is None:
            reasons.add(StaleReason.TAG_MISSING)
        elif info.digest == state.digest:
            continue
        elif info.digest in older:
            reasons.add(StaleReason.TAG_MOVED)
        else:
            holder = read_config(client, repo.with_tag(tag.name), image.platforms).labels.get(
                LABEL_VERSION, ""
            )
            if not (is_version_tag(holder) and version_key(holder) > version_key(state.version)):
                reasons.add(StaleReason.TAG_MOVED)
    return tuple(r for r in (StaleReason.TAG_MISSING, StaleReason.TAG_MOVED) if r in reasons)


@dataclass(frozen=True)
class Refreshed:
    """The registry's view of every image (`--refresh`)."""

    built: dict[str, BuiltState]
    missing: frozenset[str]
    drift: dict[str, tuple[StaleReason, ...]]


def refresh_images(
    client: RegistryClient,
    images: Iterable[ImageConfig],
    built: dict[str, BuiltState],
    workers: int,
) -> Refreshed:
    """Recover state from the registry; flag recorded images whose tags are gone or moved."""
    images = list(images)
    result = dict(built)
    missing: set[str] = set()
    drift: dict[str, tuple[StaleReason, ...]] = {}
    images, absent = _split_by_catalog(client, images, built)
    for image in absent:  # the registry has no such repository: nothing was built
        if image.name in built:
            missing.add(image.name)

    def one(
        image: ImageConfig,
    ) -> tuple[str, BuiltState | None, bool, tuple[StaleReason, ...]]:
        """(image, its state, whether its immutable tag is missing, its tag drift)."""
        recovered = recover_image(client, image)
        recorded = built.get(image.name)
        if recovered.state is not None and (
            recorded is None or version_key(recovered.state.version) > version_key(recorded.version)
        ):
            state = replace(
                recovered.state,
                history={**(recorded.history if recorded else {}), **recovered.state.history},
            )
            return image.name, state, False, tag_drift(client, image, state)
        if recorded is None:
            return image.name, None, False, ()
        recorded = replace(recorded, history={**recovered.history, **recorded.history})
        if recovered.newest_version == recorded.version and recovered.state is not None:
            current: str | None = recovered.state.digest
        else:
            info = client.head_manifest(
                parse_reference(image.repository).with_tag(recorded.version)
            )
            current = info.digest if info else None
        if current != recorded.digest:
            return image.name, recorded, True, ()
        return image.name, recorded, False, tag_drift(client, image, recorded)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, state, gone, drifted in pool.map(one, images):
            if state is not None:
                result[name] = state
            if gone:
                missing.add(name)
            if drifted:
                drift[name] = drifted
    return Refreshed(result, frozenset(missing), drift)


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


def settle(
    manifest: Manifest,
    client: RegistryClient,
    observed: Observed,
    make: Callable[[Observed], Plan],
) -> tuple[Plan, Observed]:
    """Plan, then check that every planned new version tag is free; re-plan until it is.

    One HEAD per action that builds (none for unchanged images, none after
    `--refresh`, whose tag listings already show every version). A tag held by
    one of our builds means the lock is behind the registry: that image is
    recovered as `--refresh` would, and planned again from there. A tag held by
    anything else blocks the image (an immutable tag is never overwritten).
    """
    checked: set[tuple[str, str]] = set()
    plan = make(observed)
    while not observed.listed:
        todo = [
            a
            for a in plan.actions
            if not a.retag_only and not a.blocked and (a.image, a.to_version) not in checked
        ]
        refs = {a.image: parse_reference(a.repository).with_tag(a.to_version) for a in todo}
        found = client.resolve_many(refs.values()) if refs else {}
        built = dict(observed.built)
        taken = dict(observed.taken)
        drift = dict(observed.tag_drift)
        for action in todo:
            info = found.get(refs[action.image])
            checked.add((action.image, action.to_version))
            if info is None:
                continue
            image = manifest.images[action.image]
            labels = read_config(client, refs[action.image], image.platforms).labels
            recovered = (
                recover_image(client, image) if is_our_build(labels, action.to_version) else None
            )
            if recovered is None or recovered.state is None:
                taken[action.image] = (
                    f"{image.location}: the version tag {refs[action.image]} already exists "
                    f"({info.digest}) and is not an imagectl build of {action.to_version}; "
                    "an immutable tag is never overwritten"
                )
                continue
            recorded = built.get(action.image)
            history = {**(recorded.history if recorded else {}), **recovered.state.history}
            state = replace(recovered.state, history=history)
            built[action.image] = state
            drifted = tag_drift(client, image, state)
            if drifted:
                drift[action.image] = drifted
        if built == observed.built and taken == observed.taken:
            return _mark_free(plan, checked), observed
        observed = replace(observed, built=built, taken=taken, tag_drift=drift)
        plan = make(observed)
    return plan, observed  # listed: apply checks each tag before its build, as always


def _mark_free(plan: Plan, checked: set[tuple[str, str]]) -> Plan:
    """The plan with each action whose new version tag a HEAD just found free marked so."""
    actions = tuple(
        replace(a, checked_free=True)
        if not a.retag_only and not a.blocked and (a.image, a.to_version) in checked
        else a
        for a in plan.actions
    )
    return replace(plan, actions=actions)
