"""`imagectl verify`: what the registry holds still matches the lock, signed and attested.

Per recorded image:
1. its immutable tag still names the recorded digest;
2. (`sign:`) a signature by the key verifies on that digest;
3. (`sign:`) a provenance attestation by the key names that digest as subject, and the
   lock's base digest and git revision;
4. (`sbom:`) a CycloneDX attestation by the key is attached.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagectl.errors import ImagectlError, UsageError
from imagectl.lockfile import ImageRecord, Lock, read_lock
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.output import github
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.settings import make_client
from imagectl.supply.attach import read_layers
from imagectl.supply.formats import (
    CYCLONEDX,
    SLSA_PROVENANCE_V1,
    attestation_tag,
    provenance_claims,
    signature_tag,
    subject_digests,
)
from imagectl.supply.keys import KeyError_, VerifyKey, read_verify_key
from imagectl.supply.signing import attestation_statement, load_key, signature_verifies


@dataclass
class Verdict:
    """The checks of one image: what passed and why it failed."""

    image: str
    digest: str | None
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        fields = asdict(self)
        return {"image": self.image, "digest": self.digest, "ok": self.ok, **fields}


def public_key(image: ImageConfig, override: Path | None) -> VerifyKey | None:
    """The key to check `image` with: --key, `sign.public_key`, or the private key's."""
    if override is not None:
        return read_verify_key(override)
    if image.sign is None:
        return None
    if image.sign.public_key is not None:
        return read_verify_key(image.sign.public_key)
    try:
        return load_key(image.sign).public
    except KeyError_ as exc:
        raise KeyError_(
            f"{exc}; to verify without the private key, set `sign.public_key:` or pass --key"
        ) from exc


def check_provenance(statements: Sequence[bytes], record: ImageRecord, verdict: Verdict) -> None:
    if not statements:
        verdict.problems.append("no provenance attestation signed by the key")
        return
    before = len(verdict.problems)
    data = json.loads(statements[-1])
    subjects = subject_digests(data)
    claims = provenance_claims(data)
    if record.digest not in subjects:
        verdict.problems.append(
            f"provenance subject {', '.join(subjects) or 'none'} is not the recorded digest"
        )
    if claims["base_digest"] != record.base.digest:
        verdict.problems.append(
            f"provenance base digest {claims['base_digest']} is not the recorded "
            f"{record.base.digest}"
        )
    if claims["revision"] != record.revision:
        verdict.problems.append(
            f"provenance revision {claims['revision']} is not the recorded {record.revision}"
        )
    if len(verdict.problems) == before:
        verdict.checked.append("provenance")


def verify_image(
    client: RegistryClient,
    name: str,
    image: ImageConfig,
    record: ImageRecord,
    key: VerifyKey | None,
) -> Verdict:
    verdict = Verdict(name, record.digest)
    repo = parse_reference(record.repository)
    tag = record.tags[0] if record.tags else record.version
    info = client.head_manifest(repo.with_tag(tag))
    if info is None:
        verdict.problems.append(f"tag {tag} is gone from {record.repository}")
        return verdict
    if info.digest != record.digest:
        verdict.problems.append(
            f"tag {tag} names {info.digest}, not the recorded {record.digest} (repointed)"
        )
        return verdict
    verdict.checked.append("tag")
    if key is None:
        return verdict
    signatures = read_layers(client, repo, signature_tag(record.digest))
    if any(signature_verifies(layer, key, record.digest) for layer in signatures):
        verdict.checked.append("signature")
    else:
        verdict.problems.append(
            "no signature by the key on the recorded digest"
            + (f" ({len(signatures)} other signature(s))" if signatures else "")
        )
    attestations = read_layers(client, repo, attestation_tag(record.digest))

    def statements(kind: str) -> list[bytes]:
        found = (attestation_statement(layer, key, kind) for layer in attestations)
        return [s for s in found if s is not None]

    check_provenance(statements(SLSA_PROVENANCE_V1), record, verdict)
    if image.sbom:
        if statements(CYCLONEDX):
            verdict.checked.append("sbom")
        else:
            verdict.problems.append("no CycloneDX SBOM attestation signed by the key")
    return verdict


def verify_all(
    manifest: Manifest,
    lock: Lock | None,
    client: RegistryClient,
    images: Sequence[str],
    key_override: Path | None,
) -> list[Verdict]:
    unknown = [n for n in images if n not in manifest.images]
    if unknown:
        raise UsageError(f"verify: unknown image(s): {', '.join(unknown)}")
    recorded = lock.images if lock else {}
    names = list(images) or [n for n in manifest.images if n in recorded]
    verdicts: list[Verdict] = []
    for name in names:
        record = recorded.get(name)
        if record is None:
            verdicts.append(Verdict(name, None, problems=["not recorded in the lock"]))
            continue
        try:
            key = public_key(manifest.images[name], key_override)
            verdicts.append(verify_image(client, name, manifest.images[name], record, key))
        except ImagectlError as exc:
            verdicts.append(Verdict(name, record.digest, problems=[str(exc)]))
    return verdicts


def render(verdicts: Sequence[Verdict], format: str, out: TextIO, console: Console) -> None:
    if format == "json":
        out.write(json.dumps([v.to_json() for v in verdicts], indent=2) + "\n")
        return
    if format == "github":
        for verdict in verdicts:
            for problem in verdict.problems:
                print(github.annotation("error", f"{verdict.image}: {problem}"), file=out)
    table = Table("image", "digest", "result")
    for verdict in verdicts:
        result = (
            "[green]ok[/green] (" + ", ".join(verdict.checked) + ")"
            if verdict.ok
            else "[red]FAILED[/red]: " + escape("; ".join(verdict.problems))
        )
        table.add_row(verdict.image, (verdict.digest or "-")[:19], result)
    console.print(table)
    failed = sum(1 for v in verdicts if not v.ok)
    console.print(f"{len(verdicts) - failed} verified, {failed} failed")


def verify_command(
    manifest: Manifest,
    lock: Lock | None,
    client: RegistryClient,
    images: Sequence[str],
    *,
    key: Path | None,
    format: str,
    out: TextIO,
    console: Console,
) -> int:
    verdicts = verify_all(manifest, lock, client, images, key)
    render(verdicts, format, out, console)
    return 0 if all(v.ok for v in verdicts) else 1


def run_verify(
    manifest: Manifest, images: Sequence[str], *, key: Path | None, format: str, console: Console
) -> int:
    """The `imagectl verify` entry point: read the lock, check every image, render."""
    with make_client() as client:
        return verify_command(
            manifest,
            read_lock(manifest.lock_path),
            client,
            images,
            key=key,
            format=format,
            out=sys.stdout,
            console=console,
        )
