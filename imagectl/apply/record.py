"""The lock recording of one apply run (docs/design.md section 10, "The journal").

Each finished image is appended to a journal beside the lock and fsynced: O(1) per
image whatever the size of the fleet (rewriting the whole lock after every image made
a 2,000-image apply quadratic). `read_lock` replays the journal, so a run killed
mid-way loses nothing it recorded and every reader sees it; `finish` compacts the
journal into ``imagectl.lock`` at the end of the run (one atomic write).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from imagectl.lockfile import (
    BaseRecord,
    ImageRecord,
    JournalEntry,
    Lock,
    LockJournal,
    journal_path,
    keeping_history,
    write_lock,
)


class LockRecorder:
    """Holds the lock in memory; journals each image durably; compacts at the end.

    Args:
        path: ``imagectl.lock``.
        lock: The lock as read at the start of the run (journal replayed), or None.
    """

    def __init__(self, path: Path, lock: Lock | None) -> None:
        self.path = path
        self._lock = lock or Lock()
        # mutable copies, so that a record costs O(1) (Lock.with_image copies the mapping)
        self._images = dict(self._lock.images)
        self._bases = dict(self._lock.bases)
        self._stale = False
        self.changed = False
        self._journal = LockJournal(path)
        self._mutex = threading.Lock()

    def record(self, name: str, record: ImageRecord, bases: Mapping[str, BaseRecord]) -> None:
        """Record image `name` (and the external `bases` it used); durable on return.

        Raises:
            LockFileError: the journal (or, on the first record, the lock) cannot be written.
        """
        entry = JournalEntry(image=name, record=record, bases=dict(bases))
        with self._mutex:
            if not self._journal.started and journal_path(self.path).exists():
                # a journal left by a killed run: its records are in self.lock (read_lock
                # replayed them); fold them into the lock before starting this run's
                write_lock(self.path, self._current())
            self._journal.write(entry)
            self._images[name] = keeping_history(self._images.get(name), record)
            self._bases.update(bases)
            self._stale = self.changed = True
        # outside the mutex: records finishing together share one fsync (group commit)
        self._journal.sync()

    def image(self, name: str) -> ImageRecord | None:
        """The record of image `name` so far, if any (O(1))."""
        with self._mutex:
            return self._images.get(name)

    @property
    def lock(self) -> Lock:
        """The lock as recorded so far (what `read_lock` would return)."""
        with self._mutex:
            return self._current()

    def _current(self) -> Lock:
        if self._stale:
            update = {"images": dict(self._images), "bases": dict(self._bases)}
            self._lock = self._lock.model_copy(update=update)
            self._stale = False
        return self._lock

    def finish(self) -> None:
        """Compact this run's journal into the lock (atomic write; the journal removed).

        Raises:
            LockFileError: the lock cannot be written (the journal then stays, and is
                replayed by the next reader).
        """
        with self._mutex:
            if not self._journal.started:
                return
            self._journal.close()
            write_lock(self.path, self._current())


__all__ = ["LockRecorder"]
