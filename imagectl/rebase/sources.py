"""What the last publish of each image left in hand, kept for its next rebase.

A rebase reads the old image's manifest and its config: two GETs per image, the
largest share of its registry work once the writes are done. When this machine
published that image, it had those bytes in hand: a rebase makes both, a build's
verify reads the manifest. They are kept in ``.imagectl/cache/images/<image>.json``
and the next rebase of the image reads them from there.

Content-addressed: a document is used only when its sha256 is the digest the rebase
asks for (the lock's digest, then the digests that manifest names), so a stale,
damaged or foreign file is a miss and the registry is asked, as without the cache.
One file per image, replaced at each publish: the cache grows with the fleet, not
with its history. Best effort: failing to read or write it never fails a run.
``IMAGECTL_NO_CACHE=1`` turns it off. JSON, not pickle: a cache file must never be
able to run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagectl.fsutil import atomic_write, state_dir
from imagectl.manifest.cache import enabled

FORMAT = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


@dataclass(frozen=True)
class Doc:
    """A manifest, index or config exactly as stored; `media_type` is "" for a config."""

    media_type: str
    data: bytes


Docs = Mapping[str, Doc]  # digest -> the document with that digest


def _matches(digest: str, data: bytes) -> bool:
    algorithm, _, hexdigest = digest.partition(":")
    return algorithm == "sha256" and hashlib.sha256(data).hexdigest() == hexdigest


class PublishedDocs:
    """The documents of each image's last publish on this machine (`directory` None: off)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def of(cls, root_dir: Path) -> PublishedDocs:
        """The store of the manifest rooted at `root_dir` (off when the cache is off)."""
        if not enabled():
            return cls(None)
        try:
            return cls(state_dir(root_dir) / "cache" / "images")
        except OSError:
            return cls(None)

    def _path(self, image: str) -> Path | None:
        if self.directory is None:
            return None
        if _SAFE_NAME.fullmatch(image) is None:  # a name that is no plain file name
            image = hashlib.sha256(image.encode()).hexdigest()
        return self.directory / f"{image}.json"

    def load(self, image: str) -> dict[str, Doc]:
        """The documents kept for `image` whose bytes hash to their digest ({}: none)."""
        path = self._path(image)
        if path is None:
            return {}
        try:
            stored = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            return {}
        found: dict[str, Doc] = {}
        for digest, doc in (stored.get("docs") or {}).items():
            if not isinstance(doc, dict):
                continue
            text, media_type = doc.get("text"), doc.get("media_type")
            if not isinstance(text, str) or not isinstance(media_type, str):
                continue
            data = text.encode()
            if _matches(digest, data):
                found[digest] = Doc(media_type, data)
        return found

    def save(self, image: str, docs: Docs) -> None:
        """Keep `docs` as `image`'s last publish (replacing what was kept); best effort."""
        path = self._path(image)
        if path is None:
            return
        entries = {}
        for digest, doc in docs.items():
            try:
                entries[digest] = {"media_type": doc.media_type, "text": doc.data.decode()}
            except UnicodeDecodeError:
                continue  # not JSON text: not kept
        data = json.dumps({"format": FORMAT, "docs": entries}, separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            # no fsync: a torn file after a crash fails the digest check, a miss
            atomic_write(path, data, durable=False)
