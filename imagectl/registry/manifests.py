"""Manifests, indexes and image configs as the registry client returns them.

Digests are always computed from the bytes received; a registry that names
another digest than the bytes hash to is lying (or broken) and is never believed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagectl import labels
from imagectl.domain.reference import DIGEST_RE, TAG_RE, parse_reference
from imagectl.errors import ImagectlError, RegistryError
from imagectl.registry.jsondoc import load_object
from imagectl.textsafe import clean

log = logging.getLogger("imagectl.registry")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
DEFAULT_PLATFORM = "linux/amd64"

# RFC 6838 type/subtype (parameters are cut off before the check).
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}")
_PLATFORM_PART_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CREATED_RE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)", re.ASCII
)


def _is_reference(value: str) -> bool:
    try:
        parse_reference(value)
    except ImagectlError:
        return False
    return value == value.strip()


# Labels imagectl reads back have a grammar; a value outside it is dropped, never used.
LABEL_GRAMMAR: Mapping[str, Any] = {
    labels.LABEL_BASE_NAME: _is_reference,
    labels.LABEL_BASE_DIGEST: DIGEST_RE.fullmatch,
    labels.LABEL_INPUTS: DIGEST_RE.fullmatch,
    labels.LABEL_VERSION: TAG_RE.fullmatch,
    labels.LABEL_CREATED: _CREATED_RE.fullmatch,
    labels.LABEL_REVISION: re.compile(r"[0-9a-f]{7,64}").fullmatch,
}

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}
_DEFAULT_VARIANT = {"arm64": "v8"}


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """The content digest of `data` (``sha256:<hex>``; sha512 when asked)."""
    if algorithm not in ("sha256", "sha512"):
        raise RegistryError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def checked_digest(value: str | None, what: str) -> str | None:
    """`value` (a digest a registry sent) if it is ``sha256:<64 hex>``/``sha512:<128 hex>``.

    Raises:
        RegistryError: any other text; the message shows it made safe.
    """
    if value is None or DIGEST_RE.fullmatch(value):
        return value
    raise RegistryError(f"{what}: the registry sent an invalid digest {clean(value, 100)!r}")


def checked_media_type(value: str, what: str) -> str:
    """The ``type/subtype`` of a Content-Type or mediaType a registry sent ('' for none).

    Raises:
        RegistryError: text that is no media type.
    """
    media = value.split(";")[0].strip()
    if media and not _MEDIA_TYPE_RE.fullmatch(media):
        raise RegistryError(
            f"{what}: the registry sent an invalid media type {clean(media, 100)!r}"
        )
    return media


def verify_digest(data: bytes, expected: str, what: str) -> str:
    """Return `expected` if `data` hashes to it, else raise RegistryError (never use the bytes)."""
    checked_digest(expected, what)
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
class OciManifest:
    """A manifest or index exactly as stored: raw bytes, media type, digest and parsed JSON."""

    raw: bytes = field(repr=False)
    media_type: str
    digest: str
    data: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str = "") -> OciManifest:
        """Parse `raw`; the media type defaults to the document's own ``mediaType``.

        Raises:
            RegistryError: not a JSON object, or a media type or ``manifests``/``config``
                entry of the wrong shape.
        """
        data = load_object(raw, "manifest")
        inner = data.get("mediaType")
        media = checked_media_type(media_type, "manifest") or checked_media_type(
            inner if isinstance(inner, str) else "", "manifest mediaType"
        )
        entries = data.get("manifests")
        if entries is not None and not (
            isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
        ):
            raise RegistryError("manifest: 'manifests' is not a list of descriptors")
        if data.get("config") is not None and not isinstance(data["config"], dict):
            raise RegistryError("manifest: 'config' is not a descriptor")
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
class OciConfig:
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


def _platform_of(entry: Mapping[str, Any]) -> dict[str, str]:
    """A descriptor's platform fields as strings ('' when absent or not a string)."""
    plat = entry.get("platform")
    if not isinstance(plat, Mapping):
        return {}
    return {k: v for k, v in plat.items() if isinstance(k, str) and isinstance(v, str)}


def _entry_platform(entry: Mapping[str, Any]) -> str:
    plat = _platform_of(entry)
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return clean(f"{text}/{plat['variant']}" if plat.get("variant") else text, 60)


def select_platform(index: OciManifest, platform: str) -> Mapping[str, Any]:
    """The descriptor in `index` for `platform`; attestations and other platforms are skipped.

    Raises:
        RegistryError: the index has no image for the platform (the message lists what it has).
    """
    want_os, want_arch, want_variant = parse_platform(platform)
    entries: Sequence[Mapping[str, Any]] = index.data.get("manifests") or []
    for entry in entries:
        plat = _platform_of(entry)
        os_name = str(plat.get("os", "")).lower()
        arch = _ARCH_ALIASES.get(str(plat.get("architecture", "")).lower(), "")
        arch = arch or str(plat.get("architecture", "")).lower()
        variant = str(plat.get("variant") or _DEFAULT_VARIANT.get(arch, "")).lower()
        if (os_name, arch) != (want_os, want_arch):
            continue
        if want_variant and variant and variant != want_variant:
            continue
        checked_digest(entry.get("digest") if isinstance(entry.get("digest"), str) else "", "index")
        return entry
    have = ", ".join(_entry_platform(e) for e in entries[:20]) or "none"
    raise RegistryError(f"index {index.digest} has no image for {platform} (it has: {have})")


def config_digest_of(manifest: OciManifest, where: str) -> str:
    """The config blob digest of an image manifest; RegistryError for anything else."""
    desc = manifest.data.get("config")
    if not isinstance(desc, Mapping) or not desc.get("digest"):
        kind = manifest.media_type or "untyped"
        raise RegistryError(f"{where}: {kind} manifest {manifest.digest} is not an image manifest")
    digest = desc["digest"]
    return checked_digest(digest if isinstance(digest, str) else "", f"{where}: config") or ""


def image_config_from(
    manifest: OciManifest, blob: bytes, index_digest: str | None, platform: str, where: str
) -> OciConfig:
    """An OciConfig from an image manifest and its (verified) config blob."""
    config = load_object(blob, f"{where}: config blob of {manifest.digest}")
    parts = [config.get(k) for k in ("os", "architecture", "variant")]
    plat = "/".join(p for p in parts if isinstance(p, str) and _PLATFORM_PART_RE.fullmatch(p))
    return OciConfig(
        labels=labels_of(config),
        manifest_digest=manifest.digest,
        config_digest=config_digest_of(manifest, where),
        index_digest=index_digest,
        platform=plat or platform,
    )


def labels_of(config: Mapping[str, Any]) -> dict[str, str]:
    """``config.Labels`` of an image config blob; null or missing is empty.

    Only string values are kept. A label imagectl reads back (`LABEL_GRAMMAR`: base
    name and digest, inputs, version, created, revision) whose value is outside its
    grammar is dropped (and logged), so it can never reach the lock or the output.
    Other values are kept as sent: whoever displays them escapes them (`textsafe`).
    """
    inner = config.get("config") or {}
    labels = inner.get("Labels") if isinstance(inner, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    kept: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        grammar = LABEL_GRAMMAR.get(key)
        if grammar is not None and not grammar(value):
            log.warning("ignoring label %s: invalid value %r", key, clean(value, 100))
            continue
        kept[key] = value
    return kept
