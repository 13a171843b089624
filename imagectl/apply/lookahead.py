"""The adopt producer's look at each version tag, sent ahead of the image's turn.

The first thing the adopt producer asks of an image is whether its immutable tag
already holds a build: an earlier run that died after its push (crash recovery).
That answer predates this run, so asking it when the run starts is as good as
asking when the image's turn comes, and the run does not wait on that round trip
per image. `VersionTagLookahead` sends those HEADs on a few threads of its own,
started by the first `take`; `take` hands each answer out once (a later look, such
as the check just before a push, asks the registry again).

A rival that pushes the same version during the run is not what this look is for:
verify's read after the push sees it (and, under --guard-races, the check just
before the push).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from imagectl.registry import ManifestInfo, Reference, RegistryClient

_WORKERS = 2  # ahead of a builder by far; more would crowd the builds' own requests


class VersionTagLookahead:
    """HEADs of the version tags of `refs` (image -> immutable tag), sent ahead."""

    def __init__(self, client: RegistryClient, refs: Mapping[str, Reference]) -> None:
        self._client = client
        self._refs = dict(refs)
        self._futures: dict[str, Future[ManifestInfo | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._mutex = threading.Lock()
        self._closed = False

    def _start(self) -> None:
        pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="imagectl-lookahead")
        self._pool = pool
        for image, ref in self._refs.items():
            self._futures[image] = pool.submit(self._client.head_manifest, ref)

    def take(self, image: str) -> Future[ManifestInfo | None] | None:
        """The look at `image`'s version tag sent ahead, once; None: ask now."""
        with self._mutex:
            if self._closed:
                return None
            if self._pool is None and self._refs:
                self._start()
            future = self._futures.pop(image, None)
        if future is not None and future.cancelled():
            return None
        return future

    def close(self) -> None:
        """Drop the looks nobody took (failed or skipped images); never waits on one."""
        with self._mutex:
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._futures.clear()
