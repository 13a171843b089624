"""The apply step that signs and attests one pushed image (after verify, before tags move).

Writes, for `repository@digest`:
- a cosign signature (simple signing payload) in the `sha256-<hex>.sig` attachment;
- SLSA provenance v1 (in-toto Statement in a DSSE envelope) in the `.att` attachment;
- with `sbom: true`, a CycloneDX SBOM by trivy, also in `.att`.
Layers another key wrote are kept; layers this key wrote for the same purpose are
replaced; an identical one already there is left alone (re-running is idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagectl.registry import RegistryClient, parse_reference
from imagectl.supply import attach
from imagectl.supply.formats import (
    CYCLONEDX,
    SLSA_PROVENANCE_V1,
    Layer,
    ProvenanceFacts,
    attestation_tag,
    provenance_statement,
    signature_tag,
    statement,
)
from imagectl.supply.keys import SigningKey
from imagectl.supply.signing import (
    attest_layer,
    attestation_statement,
    sign_layer,
    signature_verifies,
)


@dataclass(frozen=True)
class Published:
    """What was written (False: an identical one was there already)."""

    signed: bool
    provenance: bool
    sbom: bool


def sign_image(client: RegistryClient, key: SigningKey, repository: str, digest: str) -> bool:
    repo = parse_reference(repository)
    public = key.public

    def ours(layer: Layer) -> bool:
        return signature_verifies(layer, public, digest)

    new = sign_layer(key, repository, digest)
    return attach.merge(client, repo, signature_tag(digest), new, ours, ours)


def attest_image(
    client: RegistryClient, key: SigningKey, repository: str, digest: str, body: bytes, kind: str
) -> bool:
    """Attach the in-toto statement `body` of predicate type `kind`, signed by `key`."""
    repo = parse_reference(repository)
    public = key.public

    def ours(layer: Layer) -> bool:
        return attestation_statement(layer, public, kind) is not None

    def same(layer: Layer) -> bool:
        return attestation_statement(layer, public, kind) == body

    new = attest_layer(key, body, kind)
    return attach.merge(client, repo, attestation_tag(digest), new, ours, same)


def sbom_statement(repository: str, digest: str, bom: Mapping[str, Any]) -> bytes:
    return statement(repository, digest, CYCLONEDX, dict(bom))


def publish(
    client: RegistryClient,
    key: SigningKey,
    facts: ProvenanceFacts,
    bom: Mapping[str, Any] | None = None,
) -> Published:
    """Sign `facts.repository@facts.digest`, attach its provenance and (optional) SBOM."""
    signed = sign_image(client, key, facts.repository, facts.digest)
    body = provenance_statement(facts)
    provenance = attest_image(client, key, facts.repository, facts.digest, body, SLSA_PROVENANCE_V1)
    sbom = False
    if bom is not None:
        sbom_body = sbom_statement(facts.repository, facts.digest, bom)
        sbom = attest_image(client, key, facts.repository, facts.digest, sbom_body, CYCLONEDX)
    return Published(signed, provenance, sbom)


def pretty(data: bytes) -> str:
    return json.dumps(json.loads(data), indent=2, sort_keys=True)
