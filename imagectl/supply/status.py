"""`imagectl status`: whether each recorded image is signed and attested."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagectl.manifest.models import Manifest
from imagectl.registry import RegistryClient, parse_reference
from imagectl.supply.formats import attachment_tags


def with_supply_state(
    client: RegistryClient, manifest: Manifest, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add `signed`/`attested` to status rows (None: the image has no `sign:`).

    One concurrent round of HEADs (`resolve_many`) for every attachment of every image.
    """
    wanted = {}
    for row in rows:
        image = manifest.images.get(row["image"])
        if image is not None and image.sign is not None and row.get("digest"):
            repo = parse_reference(image.repository)
            sig, att = attachment_tags(row["digest"])
            wanted[row["image"]] = (repo.with_tag(sig), repo.with_tag(att))
    heads = client.resolve_many(ref for pair in wanted.values() for ref in pair)
    out = []
    for row in rows:
        pair = wanted.get(row["image"])
        state: dict[str, bool | None] = {"signed": None, "attested": None}
        if pair is not None:
            state = {
                "signed": heads.get(pair[0]) is not None,
                "attested": heads.get(pair[1]) is not None,
            }
        out.append({**row, **state})
    return out


def supply_cell(row: dict[str, Any]) -> str:
    if row.get("signed") is None:
        return "-"
    parts = ["signed" if row["signed"] else "UNSIGNED"]
    parts.append("attested" if row["attested"] else "no attestation")
    return ", ".join(parts)
