"""`imagectl keygen`: a cosign-compatible key pair (`<prefix>.key` encrypted, `<prefix>.pub`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from imagectl.errors import UsageError
from imagectl.fsutil import atomic_write
from imagectl.supply.keys import encrypt_private_key, generate

DEFAULT_PASSPHRASE_ENV = "IMAGECTL_KEY_PASSPHRASE"


def keygen_command(
    prefix: Path,
    *,
    passphrase_env: str = DEFAULT_PASSPHRASE_ENV,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write `<prefix>.key` (mode 0600, cosign's encrypted format) and `<prefix>.pub`.

    Raises:
        UsageError: the passphrase variable is unset, or a file exists (without --force).
    """
    env = os.environ if env is None else env
    passphrase = env.get(passphrase_env)
    if passphrase is None:
        raise UsageError(
            f"keygen: set the key's passphrase in environment variable {passphrase_env} "
            "(or name another with --passphrase-env); it encrypts the private key"
        )
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing and not force:
        raise UsageError(f"keygen: {', '.join(existing)} exists; pass --force to replace it")
    key = generate()
    sealed = encrypt_private_key(key, passphrase.encode())
    try:
        if force:
            private.unlink(missing_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
        atomic_write(public, key.public.pem())
    except OSError as exc:
        raise UsageError(f"keygen: cannot write {exc.filename}: {exc.strerror}") from exc
    return private, public
