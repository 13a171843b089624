"""Signing keys: cosign's encrypted private key format, PEM PKCS#8 and PEM public keys.

cosign (`cosign generate-key-pair`) writes the private key as a PEM block of type
``ENCRYPTED SIGSTORE PRIVATE KEY`` (older releases: ``ENCRYPTED COSIGN PRIVATE KEY``)
whose body is the JSON of go-securesystemslib's ``encrypted`` package::

    {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": b64},
     "cipher": {"name": "nacl/secretbox", "nonce": b64}, "ciphertext": b64}

The secretbox key is scrypt(passphrase, salt, N, r, p, 32 bytes); the plaintext is the
PKCS#8 DER of an ECDSA P-256 key. Byte fields are standard base64 (Go's ``[]byte``).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from imagectl.errors import ImagectlError

ENCRYPTED_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
WRITE_PEM_TYPE = ENCRYPTED_PEM_TYPES[0]
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1  # cosign's defaults
_MAX_SCRYPT_N = 1 << 20  # refuse absurd work factors from a hostile file


class KeyError_(ImagectlError):
    """A key cannot be read, decrypted or used; the message says which and why."""


@dataclass(frozen=True)
class SigningKey:
    """An ECDSA P-256 private key (never printed: repr hides it)."""

    private: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return "SigningKey(<hidden>)"

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature (ASN.1 DER), as cosign writes it."""
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    @property
    def public(self) -> VerifyKey:
        return VerifyKey(self.private.public_key())


@dataclass(frozen=True)
class VerifyKey:
    """An ECDSA P-256 public key."""

    public: ec.EllipticCurvePublicKey

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem_block(pem_type: str, body: bytes) -> bytes:
    text = _b64(body)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "\n".join([f"-----BEGIN {pem_type}-----", *lines, f"-----END {pem_type}-----"]) + "\n"
    ).encode()


def _pem_type_and_body(pem: bytes, where: str) -> tuple[str, bytes]:
    text = pem.decode("ascii", errors="replace").strip()
    first, _, rest = text.partition("\n")
    if not (first.startswith("-----BEGIN ") and first.endswith("-----")):
        raise KeyError_(f"{where}: not a PEM key (no -----BEGIN line)")
    pem_type = first[len("-----BEGIN ") : -len("-----")]
    end = f"-----END {pem_type}-----"
    body, found, _ = rest.partition(end)
    if not found:
        raise KeyError_(f"{where}: PEM block {pem_type!r} has no {end} line")
    try:
        return pem_type, base64.b64decode("".join(body.split()), validate=True)
    except ValueError as exc:
        raise KeyError_(f"{where}: PEM block {pem_type!r} is not base64") from exc


def _scrypt_key(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def encrypt_private_key(key: SigningKey, passphrase: bytes) -> bytes:
    """The PEM cosign writes: PKCS#8 DER sealed by nacl/secretbox under an scrypt key."""
    der = key.private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    body = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": _b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return _pem_block(WRITE_PEM_TYPE, json.dumps(body, separators=(",", ":")).encode())


def _decrypt(body: bytes, passphrase: bytes, where: str) -> bytes:
    try:
        data = json.loads(body)
        kdf, cipher = data["kdf"], data["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(cipher["nonce"])
        sealed = base64.b64decode(data["ciphertext"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"{where}: not cosign's encrypted key format ({exc!r})") from exc
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise KeyError_(
            f"{where}: unsupported key encryption {kdf.get('name')}/{cipher.get('name')} "
            "(cosign writes scrypt + nacl/secretbox)"
        )
    if not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        raise KeyError_(f"{where}: scrypt parameters N={n} r={r} p={p} are out of range")
    box = nacl.secret.SecretBox(_scrypt_key(passphrase, salt, n, r, p))
    try:
        return bytes(box.decrypt(sealed, nonce))
    except nacl.exceptions.CryptoError as exc:
        raise KeyError_(
            f"{where}: wrong passphrase (or the key file is damaged): it does not decrypt"
        ) from exc


def _ecdsa_p256(der_key: object, where: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(der_key, ec.EllipticCurvePrivateKey) or not isinstance(
        der_key.curve, ec.SECP256R1
    ):
        raise KeyError_(f"{where}: the key is not an ECDSA P-256 key (cosign's kind)")
    return der_key


def load_signing_key(pem: bytes, passphrase: bytes | None, where: str) -> SigningKey:
    """Read a private key: cosign's encrypted format, or PEM PKCS#8/SEC1 ECDSA P-256.

    Raises:
        KeyError_: unreadable, wrong passphrase, or not ECDSA P-256 (never echoing the key).
    """
    pem_type, body = _pem_type_and_body(pem, where)
    if pem_type in ENCRYPTED_PEM_TYPES:
        if passphrase is None:
            raise KeyError_(
                f"{where}: the key is encrypted: name the environment variable holding its "
                "passphrase with `passphrase_env:`"
            )
        der = _decrypt(body, passphrase, where)
        try:
            loaded = serialization.load_der_private_key(der, password=None)
        except ValueError as exc:
            raise KeyError_(f"{where}: the decrypted key is not PKCS#8") from exc
        return SigningKey(_ecdsa_p256(loaded, where))
    try:
        plain = serialization.load_pem_private_key(
            pem, password=passphrase if "ENCRYPTED" in pem_type else None
        )
    except (ValueError, TypeError) as exc:
        raise KeyError_(
            f"{where}: cannot read the {pem_type!r} PEM block as a private key "
            "(expected cosign's encrypted key or PEM PKCS#8 ECDSA P-256)"
        ) from exc
    return SigningKey(_ecdsa_p256(plain, where))


def load_verify_key(pem: bytes, where: str) -> VerifyKey:
    """Read a PEM public key (PKIX, as `cosign generate-key-pair` writes `cosign.pub`)."""
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{where}: not a PEM public key") from exc
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise KeyError_(f"{where}: the public key is not ECDSA P-256")
    return VerifyKey(public)


def read_verify_key(path: Path) -> VerifyKey:
    try:
        return load_verify_key(path.read_bytes(), str(path))
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read the public key: {exc.strerror}") from exc


def generate() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP256R1()))
