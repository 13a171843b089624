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
    apply_entry,
    journal_path,
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
        self.lock = lock or Lock()
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
                write_lock(self.path, self.lock)
            self._journal.append(entry)
            self.lock = apply_entry(self.lock, entry)
            self.changed = True

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
            write_lock(self.path, self.lock)


__all__ = ["LockRecorder"]
