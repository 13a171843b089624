"""The JSON Schema of manifest files, generated from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from imagectl.manifest.models import IncludedFile, RootFile

SCHEMA_URL = "https://imagectl.dev/schemas/imagectl.schema.json"


def manifest_schema() -> dict[str, Any]:
    """One schema for both the root file and included files.

    The root file needs `version` and `registry`; an included file holds only
    `include`, `bases` and `families`. `anyOf` lets editors validate both with
    the same `# yaml-language-server: $schema=` comment.
    """
    root = RootFile.model_json_schema(by_alias=True)
    included = IncludedFile.model_json_schema(by_alias=True)
    defs: dict[str, Any] = {**included.pop("$defs", {}), **root.pop("$defs", {})}
    root["title"] = "imagectl root manifest"
    included["title"] = "imagectl included manifest"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        "title": "imagectl manifest",
        "anyOf": [root, included],
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """The schema as stable, indented JSON text."""
    return json.dumps(manifest_schema(), indent=2, sort_keys=False) + "\n"
