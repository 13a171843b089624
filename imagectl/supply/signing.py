"""Load the signing key a `sign:` setting names, and sign/verify attachment layers."""

from __future__ import annotations

import os
from collections.abc import Mapping

from imagectl.errors import ImagectlError
from imagectl.manifest.models import SignRef
from imagectl.supply.formats import (
    INTOTO_PAYLOAD_TYPE,
    PREDICATE_ANNOTATION,
    SIMPLESIGNING_MEDIA,
    Layer,
    attestation_layer,
    decode_signature,
    envelope,
    pae,
    parse_envelope,
    payload_digest,
    signature_layer,
    simple_signing_payload,
)
from imagectl.supply.keys import KeyError_, SigningKey, VerifyKey, load_signing_key


class SigningError(ImagectlError):
    """The image cannot be signed or attested; its floating tags do not move."""


def load_key(sign: SignRef, env: Mapping[str, str] | None = None) -> SigningKey:
    """The private key of a `sign:` setting (file or env var, passphrase from env).

    Raises:
        KeyError_: unreadable key, missing variable or wrong passphrase; the message
            names the file or variable, never the key or the passphrase.
    """
    env = os.environ if env is None else env
    if sign.key is not None:
        where = str(sign.key)
        try:
            pem = sign.key.read_bytes()
        except OSError as exc:
            raise KeyError_(f"sign.key: cannot read {where}: {exc.strerror}") from exc
    else:
        where = f"environment variable {sign.key_env}"
        text = env.get(sign.key_env or "")
        if not text:
            raise KeyError_(f"sign.key_env: {where} is not set (it must hold the PEM private key)")
        pem = text.encode()
    passphrase: bytes | None = None
    if sign.passphrase_env:
        value = env.get(sign.passphrase_env)
        if value is None:
            raise KeyError_(
                f"sign.passphrase_env: environment variable {sign.passphrase_env} is not set"
            )
        passphrase = value.encode()
    return load_signing_key(pem, passphrase, where)


def sign_layer(key: SigningKey, repository: str, digest: str) -> Layer:
    payload = simple_signing_payload(repository, digest)
    return signature_layer(payload, key.sign(payload))


def attest_layer(key: SigningKey, statement: bytes, predicate_type: str) -> Layer:
    return attestation_layer(
        envelope(statement, key.sign(pae(INTOTO_PAYLOAD_TYPE, statement))), predicate_type
    )


def signature_verifies(layer: Layer, key: VerifyKey, digest: str) -> bool:
    """`layer` is a simple signing layer for `digest`, signed by `key`."""
    if layer.media_type != SIMPLESIGNING_MEDIA or payload_digest(layer.data) != digest:
        return False
    signature = decode_signature(layer.annotations)
    return signature is not None and key.verify(layer.data, signature)


def attestation_statement(layer: Layer, key: VerifyKey, predicate_type: str) -> bytes | None:
    """The statement of an attestation layer of `predicate_type` signed by `key`, else None."""
    if layer.annotations.get(PREDICATE_ANNOTATION) != predicate_type:
        return None
    parsed = parse_envelope(layer.data)
    if parsed is None or parsed.payload_type != INTOTO_PAYLOAD_TYPE:
        return None
    signed = pae(parsed.payload_type, parsed.payload)
    if not any(key.verify(signed, sig) for sig in parsed.signatures):
        return None
    return parsed.payload


def without_signing_secrets(env: Mapping[str, str], sign: SignRef | None) -> dict[str, str]:
    """`env` less the variables holding the signing key and passphrase (builds never need
    them: defence in depth against a build step or builder log echoing its environment)."""
    if sign is None:
        return dict(env)
    secret = {sign.key_env, sign.passphrase_env}
    return {k: v for k, v in env.items() if k not in secret}
