"""Read and write the cosign attachments of an image: `sha256-<hex>.sig` and `.att` tags.

An attachment is an OCI manifest in the image's repository whose layers are the
signatures (simple signing payloads) or attestations (DSSE envelopes); cosign and
containers/image find it by that tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from imagectl.domain.reference import Reference
from imagectl.registry import RegistryClient
from imagectl.registry.manifests import OciManifest
from imagectl.supply.formats import (
    OCI_MANIFEST,
    Layer,
    attachment_config,
    attachment_manifest,
    attachment_tags,
)


def read_layers(client: RegistryClient, repo: Reference, tag: str) -> list[Layer]:
    """The layers of attachment `tag` in `repo` (empty when there is none)."""
    ref = repo.with_tag(tag)
    if client.head_manifest(ref) is None:
        return []
    manifest = client.get_manifest(ref)
    layers: list[Layer] = []
    for entry in manifest.data.get("layers") or []:
        if not isinstance(entry, dict):
            continue
        data = client.get_blob(repo, str(entry.get("digest", "")))
        annotations = {str(k): str(v) for k, v in (entry.get("annotations") or {}).items()}
        layers.append(Layer(str(entry.get("mediaType", "")), data, annotations))
    return layers


def write_layers(client: RegistryClient, repo: Reference, tag: str, layers: Sequence[Layer]) -> str:
    """Upload the layers and a config, then point `tag` at their manifest; its digest."""
    config = attachment_config(layers)
    for blob in (config, *(layer.data for layer in layers)):
        client.put_blob(repo, blob)
    raw = attachment_manifest(config, layers)
    return client.put_manifest(repo.with_tag(tag), OciManifest.from_bytes(raw, OCI_MANIFEST))


def merge(
    client: RegistryClient,
    repo: Reference,
    tag: str,
    new: Layer,
    is_ours: Callable[[Layer], bool],
    is_same: Callable[[Layer], bool],
) -> bool:
    """Put `new` into attachment `tag`: keep others' layers, replace ours. False if unchanged.

    `is_same(layer)` says an existing layer already says what `new` says (nothing to
    write: re-running apply is idempotent); `is_ours(layer)` marks layers this key wrote
    for the same purpose, which `new` replaces.
    """
    layers = read_layers(client, repo, tag)
    if any(is_same(layer) for layer in layers):
        return False
    kept = [layer for layer in layers if not is_ours(layer)]
    write_layers(client, repo, tag, [*kept, new])
    return True


def delete_attachments(client: RegistryClient, repo: Reference, digest: str) -> list[str]:
    """Delete the `.sig` and `.att` of `digest` (before the image: no orphan on a crash).

    Returns:
        The attachment tags deleted.
    """
    deleted: list[str] = []
    for tag in attachment_tags(digest):
        info = client.head_manifest(repo.with_tag(tag))
        if info is not None:
            client.delete_manifest(repo.with_digest(info.digest))
            deleted.append(tag)
    return deleted


def attachment_state(client: RegistryClient, repo: Reference, digest: str) -> dict[str, bool]:
    """Whether `digest` has a signature and an attestation attachment (HEADs only)."""
    sig, att = attachment_tags(digest)
    heads = client.resolve_many([repo.with_tag(sig), repo.with_tag(att)])
    return {
        "signed": heads.get(repo.with_tag(sig)) is not None,
        "attested": heads.get(repo.with_tag(att)) is not None,
    }
