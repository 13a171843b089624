"""The documents cosign and containers/image read: pure builders and parsers, no I/O.

- simple signing payload (`cosign sign`), its layer in the `sha256-<hex>.sig` manifest;
- in-toto Statement v1 in a DSSE envelope, its layer in the `sha256-<hex>.att` manifest;
- SLSA provenance v1 predicate built from the lock's facts only (reproducible).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagectl.domain.reference import without_digest
from imagectl.registry.manifests import compute_digest

SIMPLESIGNING_MEDIA = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
CYCLONEDX = "https://cyclonedx.org/bom"
BUILD_TYPE = "https://imagectl.dev/apply/v1"
BUILDER_ID = "https://imagectl.dev/builder"
SIGNATURE_TYPE = "cosign container image signature"


def _canonical(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def signature_tag(digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>.sig` (cosign's and containers/image's tag scheme)."""
    return digest.replace(":", "-") + ".sig"


def attestation_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


def attachment_tags(digest: str) -> tuple[str, str]:
    return signature_tag(digest), attestation_tag(digest)


def simple_signing_payload(repository: str, digest: str) -> bytes:
    """The payload `cosign sign` signs for `repository@digest`."""
    return _canonical(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        }
    )


def payload_digest(payload: bytes) -> str | None:
    """The `docker-manifest-digest` a simple signing payload names (None if malformed)."""
    try:
        data = json.loads(payload)
        digest = data["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the envelope's signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope(payload: bytes, signature: bytes) -> bytes:
    """A DSSE envelope with one signature over `pae(in-toto, payload)`."""
    return _canonical(
        {
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    )


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope: its payload and signatures (raw bytes)."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]

    def statement(self) -> Mapping[str, Any] | None:
        try:
            data = json.loads(self.payload)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def parse_envelope(raw: bytes) -> Envelope | None:
    try:
        data = json.loads(raw)
        return Envelope(
            str(data["payloadType"]),
            base64.b64decode(data["payload"]),
            tuple(base64.b64decode(s["sig"]) for s in data.get("signatures") or []),
        )
    except (ValueError, KeyError, TypeError):
        return None


def statement(
    repository: str, digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """An in-toto Statement v1 about `repository@digest`."""
    return _canonical(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": repository, "digest": {"sha256": digest.split(":", 1)[1]}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def subject_digests(data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for subject in data.get("subject") or []:
        if isinstance(subject, dict):
            for algo, hexdigest in (subject.get("digest") or {}).items():
                found.append(f"{algo}:{hexdigest}")
    return found


@dataclass(frozen=True)
class ProvenanceFacts:
    """What a provenance statement says: all of it is in the lock and the manifest."""

    manifest_path: str  # relative to the git-ops repository
    image: str
    repository: str
    version: str
    digest: str
    base_ref: str
    base_digest: str
    revision: str | None
    source: str | None  # the git-ops repository (remote URL or path)
    inputs: str
    reasons: tuple[str, ...]
    imagectl_version: str
    builder: str


def provenance_predicate(facts: ProvenanceFacts) -> dict[str, Any]:
    """The SLSA provenance v1 predicate for one build."""
    base_name = without_digest(facts.base_ref)
    deps: list[dict[str, Any]] = [
        {"uri": f"docker://{base_name}", "digest": {"sha256": facts.base_digest.split(":")[-1]}}
    ]
    if facts.revision:
        deps.append(
            {"uri": f"git+{facts.source or 'unknown'}", "digest": {"gitCommit": facts.revision}}
        )
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "manifest": facts.manifest_path,
                "image": facts.image,
                "version": facts.version,
                "reasons": list(facts.reasons),
            },
            "internalParameters": {"inputs": facts.inputs, "builder": facts.builder},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"imagectl": facts.imagectl_version}},
            "metadata": {"invocationId": f"{facts.image}@{facts.version}"},
        },
    }


def provenance_statement(facts: ProvenanceFacts) -> bytes:
    return statement(
        facts.repository, facts.digest, SLSA_PROVENANCE_V1, provenance_predicate(facts)
    )


def provenance_claims(data: Mapping[str, Any]) -> dict[str, str | None]:
    """Base digest and git revision a provenance statement claims (None where absent)."""
    claims: dict[str, str | None] = {"base_digest": None, "revision": None}
    predicate = data.get("predicate") or {}
    deps = (predicate.get("buildDefinition") or {}).get("resolvedDependencies") or []
    for dep in deps:
        digest = dep.get("digest") or {} if isinstance(dep, dict) else {}
        if "gitCommit" in digest:
            claims["revision"] = str(digest["gitCommit"])
        elif "sha256" in digest and str(dep.get("uri", "")).startswith("docker://"):
            claims["base_digest"] = f"sha256:{digest['sha256']}"
    return claims


# -- attachment manifests ------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One attachment layer: its content, media type and annotations."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str]

    @property
    def digest(self) -> str:
        return compute_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "size": len(self.data),
            "digest": self.digest,
            "annotations": dict(self.annotations),
        }


def signature_layer(payload: bytes, signature: bytes) -> Layer:
    return Layer(
        SIMPLESIGNING_MEDIA,
        payload,
        {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    )


def attestation_layer(envelope_bytes: bytes, predicate_type: str) -> Layer:
    return Layer(
        DSSE_MEDIA,
        envelope_bytes,
        {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: predicate_type},
    )


def attachment_config(layers: Sequence[Layer]) -> bytes:
    """The config blob of an attachment manifest (as go-containerregistry's empty image)."""
    return _canonical(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        }
    )


def attachment_manifest(config: bytes, layers: Sequence[Layer]) -> bytes:
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "size": len(config),
                "digest": compute_digest(config),
            },
            "layers": [layer.descriptor() for layer in layers],
        }
    )


def decode_signature(annotations: Mapping[str, Any]) -> bytes | None:
    text = annotations.get(SIGNATURE_ANNOTATION)
    if not isinstance(text, str) or not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None
