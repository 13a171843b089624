"""`imagectl status`: whether each recorded image is signed and attested."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagectl.manifest.models import Manifest
from imagectl.registry import RegistryClient, parse_reference
from imagectl.supply.attach import attachment_state


def with_supply_state(
    client: RegistryClient, manifest: Manifest, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add `signed`/`attested` to status rows (None: the image has no `sign:`)."""
    out = []
    for row in rows:
        image = manifest.images.get(row["image"])
        state: dict[str, bool | None] = {"signed": None, "attested": None}
        if image is not None and image.sign is not None and row.get("digest"):
            state = {**attachment_state(client, parse_reference(image.repository), row["digest"])}
        out.append({**row, **state})
    return out


def supply_cell(row: dict[str, Any]) -> str:
    if row.get("signed") is None:
        return "-"
    parts = ["signed" if row["signed"] else "UNSIGNED"]
    parts.append("attested" if row["attested"] else "no attestation")
    return ", ".join(parts)
