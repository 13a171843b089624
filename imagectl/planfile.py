"""Saved plans (`plan --out FILE`): everything apply needs, and a fingerprint of what it saw.

`apply FILE` refuses a plan whose fingerprint (the manifest files and the lock)
no longer matches, as terraform refuses a stale saved plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from imagectl.errors import PlanError
from imagectl.fsutil import atomic_write
from imagectl.lockfile import journal_path
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Action, Plan

KIND = "imagectl-plan"


def fingerprint(manifest: Manifest) -> str:
    """sha256 over every manifest file, the lock (absent lock hashes as empty) and the
    lock's journal when there is one."""
    digest = hashlib.sha256()
    root = manifest.root_dir
    for path in sorted(manifest.files):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    lock = manifest.lock_path
    digest.update(b"imagectl.lock\0")
    digest.update(hashlib.sha256(lock.read_bytes() if lock.exists() else b"").digest())
    journal = journal_path(lock)  # records a killed apply journalled are part of the lock
    if journal.exists():
        digest.update(b"imagectl.lock.journal\0" + hashlib.sha256(journal.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise PlanError(f"{path}: cannot write the plan: {exc.strerror or exc}") from exc


def save_plan(path: Path, plan: Plan, manifest: Manifest) -> None:
    """Write `plan` with the fingerprint of the manifest and lock it was made from."""
    write_json_atomic(
        path,
        {
            "format": 1,
            "kind": KIND,
            "manifest": str(manifest.root),
            "fingerprint": fingerprint(manifest),
            "created_at": plan.created_at.isoformat() if plan.created_at else None,
            "revision": plan.revision,
            "base_digests": plan.base_digests,
            "actions": [a.to_saved() for a in plan.actions],
            "unchanged": list(plan.unchanged),
            "left_out": list(plan.left_out),
        },
    )


def load_plan(path: Path, manifest: Manifest) -> Plan:
    """Read a saved plan; refuse it when unreadable or stale.

    Raises:
        PlanError: the file is not a plan, or the manifests/lock changed since it was made.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: cannot read saved plan: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("format") != 1:
        raise PlanError(f"{path}: not an imagectl plan file (format 1)")
    if data.get("fingerprint") != fingerprint(manifest):
        raise PlanError(
            f"{path}: saved plan is stale: the manifests or imagectl.lock changed since it "
            "was made; run `imagectl plan --out` again"
        )
    try:
        created = data.get("created_at")
        return Plan(
            actions=tuple(Action.from_saved(a) for a in data["actions"]),
            unchanged=tuple(data["unchanged"]),
            left_out=tuple(data.get("left_out", ())),
            base_digests=dict(data["base_digests"]),
            created_at=datetime.fromisoformat(created) if created else None,
            revision=data.get("revision"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path}: saved plan is malformed ({exc!r})") from None
