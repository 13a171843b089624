"""Rebase in the registry: the old image's own layers on the new base, no builder, no download.

For each platform image of the old build, the new manifest lists the new base's
layers (mounted from the base's repository) followed by the old image's own layers
(already in the repository); the new config is the old one with ``rootfs.diff_ids``
and ``history`` spliced the same way, ``created`` set and imagectl's labels
replaced. An index gets one new image per platform and a new index. Everything is
stored by digest except the top manifest (image or index), which the caller PUTs
under the immutable tag (then the same steps as after a build).

`RebaseRefused` means the old image is not what the recorded base predicts (its
first layers are not exactly the old base's): the caller builds instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagectl.errors import ImagectlError
from imagectl.platforms import entry_platform, same_platform
from imagectl.rebase.sources import Doc, Docs
from imagectl.registry import Reference, RegistryClient
from imagectl.registry.manifests import OciManifest, compute_digest, config_digest_of


class RebaseRefused(ImagectlError):
    """The old image cannot be rebased safely; build it instead."""


@dataclass(frozen=True)
class RebaseRequest:
    """One image to rebase: where it is, its old and new base, and the labels to set."""

    repository: Reference  # the image's repository (any tag)
    old_digest: str  # the old build (image or index) in `repository`
    old_base: Reference  # the base the old build was made on, pinned by digest
    new_base: Reference  # the base to move to, pinned by digest
    labels: Mapping[str, str]  # imagectl's labels for the new version (replace the old ones)
    annotations: Mapping[str, str]  # base name/digest manifest annotations, where present
    created: str  # RFC 3339 UTC
    # documents of the old build kept from its publish (`sources`), by digest: each
    # one found here is one GET less; the others are read from the registry
    known: Docs = field(default_factory=dict)


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class _BaseImage:
    """One platform image of a base: its layers and the config fields a rebase splices."""

    layers: list[dict[str, Any]]
    diff_ids: list[str]
    history: list[Any]


class _OnceCache:
    """Values computed once per key, thread-safe: concurrent callers of one key wait for
    the first (so 8 workers starting together read a base once, not 8 times)."""

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._mutex = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._mutex:
            if key in self._values:
                return self._values[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._mutex:
                if key in self._values:
                    return self._values[key]
            value = compute()
            with self._mutex:
                self._values[key] = value
                self._locks.pop(key, None)
            return value


class Rebaser:
    """Rebases images with one registry client (one per apply run, shared by its workers).

    A base (both the old and the new one) is read once per run and platform: its
    manifest(s) and config, cached by (base digest, platform). A new base layer is
    mounted into an image's repository once, and not at all when the old image already
    lists it (the repository holds it). Per image that leaves: GET the old manifest,
    GET its config (neither when the request knows them: `RebaseRequest.known`), one
    mount per new base layer the old image lacks, and the new config's upload (one
    request where the registry takes a single-POST upload, else two). The caller's PUT
    of the manifest by tag follows.
    """

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._bases = _OnceCache()  # (base digest, platform) -> _BaseImage
        self._mounts = _OnceCache()  # (repository, blob digest) -> True once present

    def _base_for(self, base: Reference, platform: str) -> _BaseImage:
        assert base.digest is not None
        key = (base.registry, base.repository, base.digest, platform)
        found: _BaseImage = self._bases.get(key, lambda: self._read_base(base, platform))
        return found

    def _read_base(self, base: Reference, platform: str) -> _BaseImage:
        assert base.digest is not None
        top = self._bases.get(
            (base.registry, base.repository, base.digest, None),
            lambda: self.client.get_manifest(base),
        )
        manifest: OciManifest = top
        if top.is_index:
            for entry in top.data.get("manifests") or []:
                name = entry_platform(entry)
                if name is not None and same_platform(name, platform):
                    manifest = self.client.get_manifest(base.with_digest(str(entry["digest"])))
                    break
            else:
                raise RebaseRefused(f"base {base} has no image for {platform}")
        config = json.loads(self.client.get_blob(base, config_digest_of(manifest, str(base))))
        return _BaseImage(
            layers=list(manifest.data.get("layers") or []),
            diff_ids=list((config.get("rootfs") or {}).get("diff_ids") or []),
            history=list(config.get("history") or []),
        )

    def _mount(self, target: Reference, source: Reference, digest: str) -> None:
        def mount() -> bool:
            if not self.client.mount_blob(target, digest, source):
                # another registry, or it declined the mount: copy the blob once
                self.client.push_blob(target, self.client.get_blob(source, digest))
            return True

        self._mounts.get((target.registry, target.repository, digest), mount)

    def rebase(self, req: RebaseRequest) -> OciManifest:
        """The rebased image (or index), every blob and platform image it needs stored.

        The returned manifest itself is not stored yet: the caller PUTs it by tag.

        Raises:
            RebaseRefused: the old image does not start with the old base's layers.
            RegistryError: the registry failed.
        """
        return self.rebase_docs(req)[0]

    def rebase_docs(self, req: RebaseRequest) -> tuple[OciManifest, dict[str, Doc]]:
        """`rebase`, and every document of the new image by digest (its manifests and
        configs: what its own next rebase reads, `RebaseRequest.known`)."""
        repo = req.repository
        made: dict[str, Doc] = {}
        old = self._manifest(req, req.old_digest)
        if not old.is_index:
            top = self._rebase_image(req, old, None, made, store=False)
        else:
            entries = []
            for entry in old.data.get("manifests") or []:
                platform = entry_platform(entry)
                if platform is None:
                    raise RebaseRefused(f"{repo.name}@{old.digest} holds attestations: build it")
                image = self._manifest(req, str(entry["digest"]))
                new = self._rebase_image(req, image, platform, made, store=True)
                entries.append({**entry, "digest": new.digest, "size": len(new.raw)})
            data = {**old.data, "manifests": entries}
            if "annotations" in data:
                data["annotations"] = {**data["annotations"], **req.annotations}
            top = OciManifest.from_bytes(_json(data), old.media_type)
        made[top.digest] = Doc(top.media_type, top.raw)
        return top, made

    def _manifest(self, req: RebaseRequest, digest: str) -> OciManifest:
        """The old build's manifest `digest`: kept from its publish, else a GET."""
        doc = req.known.get(digest)
        if doc is not None and doc.media_type:
            try:
                manifest = OciManifest.from_bytes(doc.data, doc.media_type)
            except ImagectlError:
                pass  # not a manifest after all: ask the registry
            else:
                if manifest.digest == digest:
                    return manifest
        return self.client.get_manifest(req.repository.with_digest(digest))

    def _config(self, req: RebaseRequest, digest: str) -> bytes:
        """The old build's config `digest`: kept from its publish, else a GET."""
        doc = req.known.get(digest)
        if doc is not None and compute_digest(doc.data) == digest:
            return doc.data
        return self.client.get_blob(req.repository, digest)

    def _rebase_image(
        self,
        req: RebaseRequest,
        old: OciManifest,
        platform: str | None,
        made: dict[str, Doc],
        *,
        store: bool,
    ) -> OciManifest:
        repo = req.repository
        config = json.loads(self._config(req, config_digest_of(old, str(repo))))
        if platform is None:
            arch = "/".join(
                str(config[k]) for k in ("os", "architecture", "variant") if config.get(k)
            )
            platform = arch or "linux/amd64"
        old_base = self._base_for(req.old_base, platform)
        new_base = self._base_for(req.new_base, platform)
        layers = list(old.data.get("layers") or [])
        count = len(old_base.layers)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        same_layers = [d.get("digest") for d in layers[:count]] == [
            d.get("digest") for d in old_base.layers
        ]
        if not same_layers or diff_ids[:count] != old_base.diff_ids:
            raise RebaseRefused(
                f"{repo.name}@{old.digest} ({platform}) does not start with the layers of "
                f"its recorded base {req.old_base}"
            )
        present = {str(d.get("digest")) for d in layers}  # blobs the repository holds
        for layer in new_base.layers:
            if str(layer["digest"]) not in present:
                self._mount(repo, req.new_base, str(layer["digest"]))
        history = list(config.get("history") or [])
        inner = dict(config.get("config") or {})
        inner["Labels"] = {**(inner.get("Labels") or {}), **req.labels}
        new_config = {
            **config,
            "created": req.created,
            "config": inner,
            "rootfs": {"type": "layers", "diff_ids": [*new_base.diff_ids, *diff_ids[count:]]},
            "history": [*new_base.history, *history[len(old_base.history) :]],
        }
        config_raw = _json(new_config)
        config_digest = self.client.push_small_blob(repo, config_raw)
        made[config_digest] = Doc("", config_raw)
        data = dict(old.data)
        data["config"] = {**data["config"], "digest": config_digest, "size": len(config_raw)}
        data["layers"] = [*new_base.layers, *layers[count:]]
        if "annotations" in data:
            data["annotations"] = {**data["annotations"], **req.annotations}
        manifest = OciManifest.from_bytes(_json(data), old.media_type)
        if store:
            self.client.put_manifest(repo.with_digest(manifest.digest), manifest)
            made[manifest.digest] = Doc(manifest.media_type, manifest.raw)
        return manifest
