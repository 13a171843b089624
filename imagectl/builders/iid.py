"""Image ids a builder writes with `--iidfile`: the config digest of each build.

apply's read after the push compares it with the config digest under the tag, so
telling this run's build from another one needs no config fetch
(docs/versions-and-tags.md "Requests per build").
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DIGEST = re.compile(r"(sha256:)?([0-9a-f]{64})")


class ImageIds:
    """Image id by image reference, for the builds of one builder (thread-safe)."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._mutex = threading.Lock()

    @contextmanager
    def capture(self, ref: str) -> Iterator[Path]:
        """A path for `--iidfile`; what the build wrote there becomes `ref`'s image id."""
        with self._mutex:
            self._ids.pop(ref, None)
        with tempfile.TemporaryDirectory(prefix="imagectl-iid-") as tmp:
            path = Path(tmp) / "iid"
            yield path
            text = path.read_text().strip() if path.exists() else ""
        found = _DIGEST.fullmatch(text)
        if found is not None:
            with self._mutex:
                self._ids[ref] = f"sha256:{found.group(2)}"

    def get(self, ref: str) -> str | None:
        """The image id of the last build of `ref` (None: unknown)."""
        with self._mutex:
            return self._ids.get(ref)
