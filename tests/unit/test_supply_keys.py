"""Keys: cosign's encrypted private key format, PEM keys, keygen (cosign itself reads them in
tests/e2e/test_supply_chain.py)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from imagectl.errors import UsageError
from imagectl.manifest.models import SignRef
from imagectl.supply.keygen import keygen_command
from imagectl.supply.keys import (
    KeyError_,
    encrypt_private_key,
    generate,
    load_signing_key,
    load_verify_key,
)
from imagectl.supply.signing import load_key, without_signing_secrets


def test_encrypted_key_round_trips_and_has_cosigns_shape() -> None:
    key = generate()
    pem = encrypt_private_key(key, b"s3cret")
    lines = pem.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    body = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert body["kdf"]["name"] == "scrypt"
    assert body["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(body["kdf"]["salt"])) == 32
    assert body["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(body["cipher"]["nonce"])) == 24
    loaded = load_signing_key(pem, b"s3cret", "k")
    assert loaded.public.pem() == key.public.pem()
    assert loaded.public.verify(b"data", key.sign(b"data"))
    assert not loaded.public.verify(b"other", key.sign(b"data"))
    assert "hidden" in repr(loaded)


def test_wrong_or_missing_passphrase_is_a_clear_error() -> None:
    pem = encrypt_private_key(generate(), b"right")
    with pytest.raises(KeyError_, match="k: wrong passphrase"):
        load_signing_key(pem, b"wrong", "k")
    with pytest.raises(KeyError_, match="passphrase_env"):
        load_signing_key(pem, None, "k")


def test_plain_pkcs8_p256_is_read_and_other_curves_are_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signature = private.sign(b"x", ec.ECDSA(hashes.SHA256()))
    assert load_signing_key(pem, None, "k").public.verify(b"x", signature)
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyError_, match="not an ECDSA P-256 key"):
        load_signing_key(other, None, "k")
    with pytest.raises(KeyError_, match="not a PEM key"):
        load_signing_key(b"garbage", None, "k")
    with pytest.raises(KeyError_, match="not a PEM public key"):
        load_verify_key(pem, "pub")


def test_key_from_env_and_errors_never_show_the_secret() -> None:
    pem = encrypt_private_key(generate(), b"pass-canary")
    sign = SignRef(None, "SIGN_KEY", "SIGN_PASS")
    key = load_key(sign, {"SIGN_KEY": pem.decode(), "SIGN_PASS": "pass-canary"})
    assert key.public.verify(b"a", key.sign(b"a"))
    with pytest.raises(KeyError_) as caught:
        load_key(sign, {"SIGN_KEY": pem.decode(), "SIGN_PASS": "pass-canary-wrong"})
    assert "pass-canary" not in str(caught.value)
    assert pem.decode().splitlines()[1] not in str(caught.value)
    assert "environment variable SIGN_KEY" in str(caught.value)
    with pytest.raises(KeyError_, match="SIGN_KEY is not set"):
        load_key(sign, {})
    with pytest.raises(KeyError_, match="SIGN_PASS is not set"):
        load_key(sign, {"SIGN_KEY": pem.decode()})


def test_keygen_writes_a_private_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    env = {"PASS": "pw"}
    private, public = keygen_command(tmp_path / "cosign", passphrase_env="PASS", env=env)
    assert (private.name, public.name) == ("cosign.key", "cosign.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_signing_key(private.read_bytes(), b"pw", str(private))
    assert load_verify_key(public.read_bytes(), "pub").pem() == key.public.pem()
    with pytest.raises(UsageError, match="exists; pass --force"):
        keygen_command(tmp_path / "cosign", passphrase_env="PASS", env=env)
    keygen_command(tmp_path / "cosign", passphrase_env="PASS", env=env, force=True)
    assert load_verify_key(public.read_bytes(), "pub").pem() != key.public.pem()
    with pytest.raises(UsageError, match="environment variable NOPE"):
        keygen_command(tmp_path / "other", passphrase_env="NOPE", env={})
    assert not (tmp_path / "other.key").exists()


def test_builds_never_get_the_signing_variables() -> None:
    env = {"PATH": "/bin", "SIGN_KEY": "pem", "SIGN_PASS": "pw", "TOK": "build secret"}
    sign = SignRef(None, "SIGN_KEY", "SIGN_PASS")
    assert without_signing_secrets(env, sign) == {"PATH": "/bin", "TOK": "build secret"}
    assert without_signing_secrets(env, None) == env
