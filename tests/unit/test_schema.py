"""The committed JSON Schema is the one the models generate, and examples carry its comment."""

from __future__ import annotations

import json
from pathlib import Path

from imagectl.schema import manifest_schema, schema_text

REPO = Path(__file__).resolve().parents[2]


def test_committed_schema_is_in_sync_with_the_models() -> None:
    committed = (REPO / "schemas" / "imagectl.schema.json").read_text()
    assert committed == schema_text(), "run: imagectl schema > schemas/imagectl.schema.json"


def test_schema_forbids_unknown_keys_and_knows_the_fields() -> None:
    schema = manifest_schema()
    root = schema["anyOf"][0]
    assert root["additionalProperties"] is False
    assert set(root["required"]) == {"version", "registry"}
    image = schema["$defs"]["ImageModel"]
    assert image["additionalProperties"] is False
    assert {"context", "version", "from", "tags", "bump", "secrets"} <= set(image["properties"])
    json.dumps(schema)  # serialisable


def test_example_manifests_carry_the_schema_comment() -> None:
    files = sorted((REPO / "examples").rglob("*.yaml"))
    manifests = [f for f in files if ".github" not in f.parts and "workflows" not in f.parts]
    assert manifests
    for path in manifests:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target == REPO / "schemas" / "imagectl.schema.json", path
