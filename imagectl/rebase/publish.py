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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagectl.errors import ImagectlError
from imagectl.platforms import entry_platform, same_platform
from imagectl.registry import Reference, RegistryClient
from imagectl.registry.manifests import OciManifest, config_digest_of


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


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class Rebaser:
    """Rebases images with one registry client; base manifests and configs are read once."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._cache: dict[tuple[str, str], Any] = {}
        self._mounted: set[tuple[str, str]] = set()
        self._mutex = threading.Lock()

    def _cached_manifest(self, ref: Reference, digest: str) -> OciManifest:
        key = (ref.name, digest)
        with self._mutex:
            found = self._cache.get(key)
        if found is None:
            found = self.client.get_manifest(ref.with_digest(digest))
            with self._mutex:
                self._cache[key] = found
        assert isinstance(found, OciManifest)
        return found

    def _config(self, ref: Reference, manifest: OciManifest) -> dict[str, Any]:
        digest = config_digest_of(manifest, str(ref))
        key = (ref.name, digest)
        with self._mutex:
            found = self._cache.get(key)
        if found is None:
            found = json.loads(self.client.get_blob(ref, digest))
            with self._mutex:
                self._cache[key] = found
        return dict(found)

    def _mount(self, target: Reference, source: Reference, digest: str) -> None:
        key = (target.name, digest)
        with self._mutex:
            if key in self._mounted:
                return
        if not self.client.mount_blob(target, digest, source):
            # another registry, or it declined the mount: copy the blob once
            self.client.push_blob(target, self.client.get_blob(source, digest))
        with self._mutex:
            self._mounted.add(key)

    def _base_for(self, base: Reference, platform: str) -> OciManifest:
        assert base.digest is not None
        top = self._cached_manifest(base, base.digest)
        if not top.is_index:
            return top
        for entry in top.data.get("manifests") or []:
            name = entry_platform(entry)
            if name is not None and same_platform(name, platform):
                return self._cached_manifest(base, str(entry["digest"]))
        raise RebaseRefused(f"base {base} has no image for {platform}")

    def rebase(self, req: RebaseRequest) -> OciManifest:
        """The rebased image (or index), every blob and platform image it needs stored.

        The returned manifest itself is not stored yet: the caller PUTs it by tag.

        Raises:
            RebaseRefused: the old image does not start with the old base's layers.
            RegistryError: the registry failed.
        """
        repo = req.repository
        old = self.client.get_manifest(repo.with_digest(req.old_digest))
        if not old.is_index:
            return self._rebase_image(req, old, None, store=False)
        entries = []
        for entry in old.data.get("manifests") or []:
            platform = entry_platform(entry)
            if platform is None:
                raise RebaseRefused(f"{repo.name}@{old.digest} holds attestations: build it")
            image = self.client.get_manifest(repo.with_digest(str(entry["digest"])))
            new = self._rebase_image(req, image, platform, store=True)
            entries.append({**entry, "digest": new.digest, "size": len(new.raw)})
        data = {**old.data, "manifests": entries}
        if "annotations" in data:
            data["annotations"] = {**data["annotations"], **req.annotations}
        return OciManifest.from_bytes(_json(data), old.media_type)

    def _rebase_image(
        self, req: RebaseRequest, old: OciManifest, platform: str | None, *, store: bool
    ) -> OciManifest:
        repo = req.repository
        config = self._config(repo, old)
        if platform is None:
            arch = "/".join(
                str(config[k]) for k in ("os", "architecture", "variant") if config.get(k)
            )
            platform = arch or "linux/amd64"
        old_base = self._base_for(req.old_base, platform)
        new_base = self._base_for(req.new_base, platform)
        old_base_config = self._config(req.old_base, old_base)
        new_base_config = self._config(req.new_base, new_base)
        layers = list(old.data.get("layers") or [])
        base_layers = list(old_base.data.get("layers") or [])
        count = len(base_layers)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        base_diff_ids = list((old_base_config.get("rootfs") or {}).get("diff_ids") or [])
        same_layers = [d.get("digest") for d in layers[:count]] == [
            d.get("digest") for d in base_layers
        ]
        if not same_layers or diff_ids[:count] != base_diff_ids:
            raise RebaseRefused(
                f"{repo.name}@{old.digest} ({platform}) does not start with the layers of "
                f"its recorded base {req.old_base}"
            )
        history = list(config.get("history") or [])
        own_history = history[len(old_base_config.get("history") or []) :]
        new_layers = list(new_base.data.get("layers") or [])
        for layer in new_layers:
            self._mount(repo, req.new_base, str(layer["digest"]))
        inner = dict(config.get("config") or {})
        inner["Labels"] = {**(inner.get("Labels") or {}), **req.labels}
        new_config = {
            **config,
            "created": req.created,
            "config": inner,
            "rootfs": {
                "type": "layers",
                "diff_ids": [
                    *((new_base_config.get("rootfs") or {}).get("diff_ids") or []),
                    *diff_ids[count:],
                ],
            },
            "history": [*(new_base_config.get("history") or []), *own_history],
        }
        config_raw = _json(new_config)
        config_digest = self.client.push_blob(repo, config_raw)
        data = dict(old.data)
        data["config"] = {**data["config"], "digest": config_digest, "size": len(config_raw)}
        data["layers"] = [*new_layers, *layers[count:]]
        if "annotations" in data:
            data["annotations"] = {**data["annotations"], **req.annotations}
        manifest = OciManifest.from_bytes(_json(data), old.media_type)
        if store:
            self.client.put_manifest(repo.with_digest(manifest.digest), manifest)
        return manifest
