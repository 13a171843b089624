"""JSON from a registry: parsed without a traceback, whatever the bytes are.

Deeply nested JSON makes Python's parser raise `RecursionError`, huge integers
raise `ValueError`, bad UTF-8 `UnicodeDecodeError`: each becomes a RegistryError
that names the document, so a hostile reply ends a command cleanly.
"""

from __future__ import annotations

import json
from typing import Any

from imagectl.errors import RegistryError
from imagectl.textsafe import clean


def load_json(raw: bytes | str, what: str) -> Any:
    """Parse `raw`, the `what` (``manifest of host/repo:tag``), or raise RegistryError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise RegistryError(
            f"{what}: the JSON is nested too deeply to read (a hostile or broken reply)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{what}: not valid JSON ({clean(exc, 200)})") from None


def load_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """`load_json`, which must give a JSON object."""
    data = load_json(raw, what)
    if not isinstance(data, dict):
        raise RegistryError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data
