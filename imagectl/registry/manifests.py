"""Manifests, indexes and image configs as the registry client returns them.

Digests are always computed from the bytes received; a registry that names
another digest than the bytes hash to is lying (or broken) and is never believed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagectl.errors import RegistryError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
DEFAULT_PLATFORM = "linux/amd64"

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}
_DEFAULT_VARIANT = {"arm64": "v8"}


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """The content digest of `data` (``sha256:<hex>``; sha512 when asked)."""
    if algorithm not in ("sha256", "sha512"):
        raise RegistryError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str) -> str:
    """Return `expected` if `data` hashes to it, else raise RegistryError (never use the bytes)."""
    actual = compute_digest(data, expected.partition(":")[0])
    if actual != expected:
        raise RegistryError(f"digest mismatch for {what}: expected {expected}, content is {actual}")
    return actual


@dataclass(frozen=True)
class ManifestInfo:
    """What a HEAD of a manifest says: digest, media type and size in bytes."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as stored: raw bytes, media type, digest and parsed JSON."""

    raw: bytes = field(repr=False)
    media_type: str
    digest: str
    data: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str = "") -> Manifest:
        """Parse `raw`; the media type defaults to the document's own ``mediaType``."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError("manifest is not a JSON object")
        media = media_type.split(";")[0].strip() or str(data.get("mediaType") or "")
        return cls(raw=raw, media_type=media, digest=compute_digest(raw), data=data)

    @property
    def is_index(self) -> bool:
        """True for an OCI image index or a docker manifest list."""
        return self.media_type in INDEX_TYPES or (not self.media_type and "manifests" in self.data)

    @property
    def info(self) -> ManifestInfo:
        """Digest, media type and size, as a HEAD would report them."""
        return ManifestInfo(self.digest, self.media_type, len(self.raw))


@dataclass(frozen=True)
class ImageConfig:
    """The labels of one image and where they came from.

    Attributes:
        labels: the image config's ``config.Labels`` (empty when it has none).
        manifest_digest: digest of the platform's image manifest.
        config_digest: digest of the config blob.
        index_digest: digest of the index the reference pointed at, None for a plain image.
        platform: the platform of the image, ``os/arch[/variant]``.
    """

    labels: Mapping[str, str]
    manifest_digest: str
    config_digest: str
    index_digest: str | None = None
    platform: str = DEFAULT_PLATFORM


def parse_platform(text: str) -> tuple[str, str, str]:
    """``linux/arm64/v8`` as (os, architecture, variant), normalised the way docker does."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"invalid platform {text!r}: expected os/arch[/variant]")
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    return os_name, arch, variant or _DEFAULT_VARIANT.get(arch, "")


def _entry_platform(entry: Mapping[str, Any]) -> str:
    plat = entry.get("platform") or {}
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return f"{text}/{plat['variant']}" if plat.get("variant") else text


def select_platform(index: Manifest, platform: str) -> Mapping[str, Any]:
    """The descriptor in `index` for `platform`; attestations and other platforms are skipped.

    Raises:
        RegistryError: the index has no image for the platform (the message lists what it has).
    """
    want_os, want_arch, want_variant = parse_platform(platform)
    entries: Sequence[Mapping[str, Any]] = index.data.get("manifests") or []
    for entry in entries:
        plat = entry.get("platform") or {}
        os_name = str(plat.get("os", "")).lower()
        arch = _ARCH_ALIASES.get(str(plat.get("architecture", "")).lower(), "")
        arch = arch or str(plat.get("architecture", "")).lower()
        variant = str(plat.get("variant") or _DEFAULT_VARIANT.get(arch, "")).lower()
        if (os_name, arch) != (want_os, want_arch):
            continue
        if want_variant and variant and variant != want_variant:
            continue
        return entry
    have = ", ".join(_entry_platform(e) for e in entries) or "none"
    raise RegistryError(f"index {index.digest} has no image for {platform} (it has: {have})")


def config_digest_of(manifest: Manifest, where: str) -> str:
    """The config blob digest of an image manifest; RegistryError for anything else."""
    desc = manifest.data.get("config")
    if not isinstance(desc, Mapping) or not desc.get("digest"):
        kind = manifest.media_type or "untyped"
        raise RegistryError(f"{where}: {kind} manifest {manifest.digest} is not an image manifest")
    return str(desc["digest"])


def image_config_from(
    manifest: Manifest, blob: bytes, index_digest: str | None, platform: str, where: str
) -> ImageConfig:
    """An ImageConfig from an image manifest and its (verified) config blob."""
    try:
        config = json.loads(blob)
    except ValueError as exc:
        raise RegistryError(f"{where}: config blob of {manifest.digest} is not JSON") from exc
    if not isinstance(config, dict):
        raise RegistryError(f"{where}: config blob of {manifest.digest} is not a JSON object")
    plat = "/".join(str(config[k]) for k in ("os", "architecture", "variant") if config.get(k))
    return ImageConfig(
        labels=labels_of(config),
        manifest_digest=manifest.digest,
        config_digest=config_digest_of(manifest, where),
        index_digest=index_digest,
        platform=plat or platform,
    )


def labels_of(config: Mapping[str, Any]) -> dict[str, str]:
    """``config.Labels`` of an image config blob; null or missing is empty."""
    inner = config.get("config") or {}
    labels = inner.get("Labels") if isinstance(inner, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}
