"""The supply-chain steps of the per-image apply protocol.

- `check_base`: before building, an external base with `verify:` must carry a sigstore
  signature by that key on the exact digest about to be built on;
- `sign_and_attest`: after the registry confirmed the digest and before the floating tags
  move, sign it and attach its provenance (and SBOM). Any failure fails the image.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from imagectl import __version__
from imagectl.errors import ImagectlError, RegistryError
from imagectl.manifest.models import BaseConfig, ImageConfig, Manifest, SignRef
from imagectl.plan.model import Action
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.hosts import is_loopback
from imagectl.supply.attach import read_layers
from imagectl.supply.formats import ProvenanceFacts, signature_tag
from imagectl.supply.keys import SigningKey, read_verify_key
from imagectl.supply.publish import Published, publish
from imagectl.supply.sbom import generate_sbom
from imagectl.supply.signing import SigningError, load_key, signature_verifies


class BaseVerificationError(ImagectlError):
    """An upstream base is not signed by the key its `verify:` names."""


class KeyRing:
    """Signing keys of one run, each read and decrypted once (scrypt is slow on purpose)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._keys: dict[tuple[SignRef, str], SigningKey] = {}
        self._mutex = threading.Lock()

    def key(self, sign: SignRef) -> SigningKey:
        source = (sign.key_env and self.env.get(sign.key_env)) or ""
        marker = hashlib.sha256(source.encode()).hexdigest()  # key_env may change: re-read
        with self._mutex:
            found = self._keys.get((sign, marker))
            if found is None:
                found = self._keys[(sign, marker)] = load_key(sign, self.env)
            return found


def base_signature_problem(client: RegistryClient, base: BaseConfig, digest: str) -> str | None:
    """Why `base`@`digest` fails its `verify:` key, or None when a signature verifies."""
    if base.verify_key is None:
        return None
    key = read_verify_key(base.verify_key)
    repo = parse_reference(base.ref)
    layers = read_layers(client, repo, signature_tag(digest))
    where = f"base {base.name} ({repo.name}@{digest})"
    if not layers:
        return f"{where} is not signed: no {signature_tag(digest)} signature in {repo.name}"
    if not any(signature_verifies(layer, key, digest) for layer in layers):
        return (
            f"{where} has {len(layers)} signature(s) but none by {base.verify_key} for this digest"
        )
    return None


def check_base(client: RegistryClient, manifest: Manifest, action: Action, digest: str) -> None:
    """Fail the image when its external base does not pass its `verify:` key."""
    base = manifest.bases.get(action.base.name)
    if action.base.internal or base is None or base.verify_key is None:
        return
    problem = base_signature_problem(client, base, digest)
    if problem:
        raise BaseVerificationError(
            f"{action.image}: {problem}; refusing to build on it (declared at {base.location})"
        )


def provenance_facts(
    manifest: Manifest,
    image: ImageConfig,
    action: Action,
    digest: str,
    base_digest: str,
    revision: str | None,
    source: str | None,
) -> ProvenanceFacts:
    return ProvenanceFacts(
        manifest_path=manifest.root.name,
        image=action.image,
        repository=action.repository,
        version=action.to_version,
        digest=digest,
        base_ref=action.base.ref,
        base_digest=base_digest,
        revision=revision,
        source=source,
        inputs=action.inputs,
        reasons=tuple(str(r) for r in action.reasons),
        imagectl_version=__version__,
        builder=image.builder,
    )


def sign_and_attest(
    client: RegistryClient, keys: KeyRing, facts: ProvenanceFacts, image: ImageConfig
) -> Published | None:
    """Sign and attest one pushed image when its `sign:` is set.

    Raises:
        SigningError: any failure (key, trivy, registry), naming the image.
    """
    if image.sign is None:
        return None
    try:
        key = keys.key(image.sign)
        bom = None
        if image.sbom:
            host = parse_reference(facts.repository).registry
            bom = generate_sbom(
                f"{facts.repository}@{facts.digest}",
                insecure=is_loopback(host),
                env=keys.env,
            )
        return publish(client, key, facts, bom)
    except (ImagectlError, RegistryError) as exc:
        raise SigningError(
            f"{facts.image}: signing {facts.repository}@{facts.digest} failed: {exc}; "
            "its floating tags were not moved"
        ) from exc


def unverified_bases(
    client: RegistryClient, manifest: Manifest, actions: Sequence[Action]
) -> dict[str, str]:
    """Plan-time check: image -> why its base fails `verify:` (dependents included).

    `actions` come parents first; each distinct base digest is checked once.
    """
    flagged: dict[str, str] = {}
    checked: dict[tuple[str, str], str | None] = {}
    for action in actions:
        base = manifest.bases.get(action.base.name)
        if action.base.internal:
            if action.base.name in flagged:
                flagged[action.image] = f"built on {action.base.name}, whose base is refused"
            continue
        if base is None or base.verify_key is None or action.base.digest is None:
            continue
        key = (base.name, action.base.digest)
        if key not in checked:
            try:
                checked[key] = base_signature_problem(client, base, action.base.digest)
            except ImagectlError as exc:
                checked[key] = str(exc)
        problem = checked[key]
        if problem:
            flagged[action.image] = problem
    return flagged


def with_refused(plan_json: dict[str, Any], refused: Mapping[str, str]) -> dict[str, Any]:
    """The plan's JSON with `"state": "base-refused"` and `"refused"` on flagged actions."""
    for action in plan_json.get("actions", []):
        why = refused.get(action.get("image", ""))
        if why:
            action["state"] = "base-refused"
            action["refused"] = why
    return plan_json
