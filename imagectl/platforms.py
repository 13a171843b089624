"""Which platform of an image index a read means (pure choice, plus the one read that uses it).

An image built for several platforms is an OCI index; its labels are on every
platform's image. A read that wants "the labels of this image" (adoption, verify,
floating tags, status, prune, recovery from labels) picks, in this order:

1. the first platform the image is declared for (``platforms:`` in the manifest);
2. the platform of this machine (``linux/amd64`` on x86-64, ``linux/arm64`` on aarch64);
3. the first entry of the index that is an image (attestations are skipped).

So nothing assumes ``linux/amd64``: an index without an amd64 entry is read through
its first image. A plain (single-platform) manifest is read as it is.
"""

from __future__ import annotations

import platform as _host
from collections.abc import Mapping, Sequence
from typing import Any

from imagectl.errors import RegistryError
from imagectl.registry import Reference, RegistryClient
from imagectl.registry.manifests import (
    OciConfig,
    OciManifest,
    config_digest_of,
    image_config_from,
    parse_platform,
)

_ATTESTATION = "attestation-manifest"


def host_platform(machine: str | None = None) -> str:
    """This machine's platform as ``os/arch`` (the architecture normalised as docker does)."""
    os_name, arch, _ = parse_platform(f"linux/{(machine or _host.machine()) or 'amd64'}")
    return f"{os_name}/{arch}"


def entry_platform(entry: Mapping[str, Any]) -> str | None:
    """``os/arch[/variant]`` of an index entry; None for attestations and unknown entries."""
    annotations = entry.get("annotations") or {}
    if annotations.get("vnd.docker.reference.type") == _ATTESTATION:
        return None
    plat = entry.get("platform") or {}
    os_name, arch = str(plat.get("os", "")), str(plat.get("architecture", ""))
    if not os_name or not arch or "unknown" in (os_name, arch):
        return None
    variant = str(plat.get("variant") or "")
    return f"{os_name}/{arch}/{variant}" if variant else f"{os_name}/{arch}"


def same_platform(a: str, b: str) -> bool:
    """Whether two platform strings name the same platform (``arm64`` == ``arm64/v8``)."""
    try:
        return parse_platform(a) == parse_platform(b)
    except RegistryError:
        return False


def index_platforms(index: OciManifest) -> dict[str, str]:
    """Platform -> image manifest digest of every image entry of an index, in index order."""
    found: dict[str, str] = {}
    for entry in index.data.get("manifests") or []:
        name = entry_platform(entry)
        if name is not None and name not in found:
            found[name] = str(entry.get("digest", ""))
    return found


def find_platform(available: Mapping[str, str], wanted: str) -> str | None:
    """The key of `available` that names `wanted`, or None."""
    return next((key for key in available if same_platform(key, wanted)), None)


def choose_platform(available: Sequence[str], declared: Sequence[str] = ()) -> str:
    """The platform a read means among `available` (see the module docstring).

    Raises:
        RegistryError: the index holds no image at all.
    """
    for wanted in (*declared, host_platform()):
        for key in available:
            if same_platform(key, wanted):
                return key
    if not available:
        raise RegistryError("the index holds no image (only attestations or nothing)")
    return available[0]


def read_config(client: RegistryClient, ref: Reference, declared: Sequence[str] = ()) -> OciConfig:
    """Labels and digests of the image `ref` names; for an index, the platform it means."""
    manifest = client.get_manifest(ref)
    index_digest: str | None = None
    chosen = declared[0] if declared else host_platform()
    if manifest.is_index:
        entries = index_platforms(manifest)
        try:
            chosen = choose_platform(list(entries), declared)
        except RegistryError as exc:
            raise RegistryError(f"{ref}: {exc}") from None
        index_digest = manifest.digest
        manifest = client.get_manifest(ref.with_digest(entries[chosen]))
        if manifest.is_index:
            raise RegistryError(f"{ref}: the {chosen} entry is an index, not an image")
    blob = client.get_blob(ref, config_digest_of(manifest, str(ref)))
    return image_config_from(manifest, blob, index_digest, chosen, str(ref))


def platform_digests(client: RegistryClient, ref: Reference) -> dict[str, str]:
    """Platform -> image manifest digest of what `ref` names (one entry for a plain image)."""
    manifest = client.get_manifest(ref)
    if manifest.is_index:
        return index_platforms(manifest)
    blob = client.get_blob(ref, config_digest_of(manifest, str(ref)))
    config = image_config_from(manifest, blob, None, host_platform(), str(ref))
    return {config.platform: manifest.digest}


def requested_digests(available: Mapping[str, str], wanted: Sequence[str]) -> dict[str, str]:
    """`available` narrowed to the `wanted` platforms, keyed as `wanted` spells them."""
    found: dict[str, str] = {}
    for platform in wanted:
        key = find_platform(available, platform)
        if key is not None:
            found[platform] = available[key]
    return found


def read_labels(
    client: RegistryClient, ref: Reference, declared: Sequence[str] = ()
) -> Mapping[str, str]:
    """The labels of the image `ref` names (the platform it means, for an index)."""
    return read_config(client, ref, declared).labels
