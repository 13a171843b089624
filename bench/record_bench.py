"""Scenario `record`: the cost of recording images in the lock during an apply.

A lock already records a fleet of 2,000 images (a base update rebuilds all of them).
The recorder (imagectl/apply/record.py) then records 2,000 new versions, one
durable journal line each (written into preallocated space, then fdatasynced), and
compacts the journal into ``imagectl.lock`` at the end of the run. Figures: the
total wall time (goal < 1 s), the cost per image, the compaction, the disk alone
(2,000 lines of the same size written the journal's way, without imagectl: the floor
of any durable per-image record; and the way the journal synced before, appends each
fsynced), imagectl's own cost (the CPU time of recording and compaction, which
excludes waiting for the disk; goal < 1 s), and the old way (the whole 2,000-image
lock rewritten after every image) measured on 20 images and extrapolated linearly
(every rewrite writes the whole lock).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.goals import Figure
from imagectl.apply.record import LockRecorder
from imagectl.lockfile import (
    BaseRecord,
    ImageRecord,
    JournalEntry,
    Lock,
    LockJournal,
    journal_line,
    read_lock,
    write_lock,
)

IMAGES = 2000
OLD_WAY_SAMPLE = 20
GOAL_TOTAL = 1.0  # seconds of wall time for the whole recording, disk included
GOAL_CPU = 1.0


def image_record(index: int, version: str) -> ImageRecord:
    """A realistic record: four tags, an internal base, a revision, one older version."""
    digest = "sha256:" + f"{index:08x}{version.replace('.', '')}".ljust(64, "0")[:64]
    return ImageRecord(
        repository=f"localhost:5000/fleet/image-{index:05d}",
        version=version,
        digest=digest,
        tags=[version, version.rsplit(".", 1)[0], version.split(".")[0], "latest"],
        base=BaseRecord(
            ref=f"localhost:5000/fleet/base-{index % 10}:1", digest="sha256:" + "b" * 64
        ),
        inputs="sha256:" + "1" * 64,
        built_at=datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC),
        revision="0123456789abcdef0123456789abcdef01234567",
    )


def fleet_lock(images: int) -> Lock:
    lock = Lock()
    records = {f"image-{i:05d}": image_record(i, "1.0.0") for i in range(images)}
    return lock.model_copy(update={"images": records})


def record_all(path: Path, images: int) -> tuple[float, float, float]:
    """(seconds to record `images` new versions, seconds to compact, CPU seconds of both)
    through LockRecorder; the CPU excludes the time spent waiting for fsync."""
    recorder = LockRecorder(path, read_lock(path))
    records = [(f"image-{index:05d}", image_record(index, "1.0.1")) for index in range(images)]
    start, cpu = time.perf_counter(), time.process_time()
    for name, record in records:
        recorder.record(name, record, {})
    recorded = time.perf_counter()
    recorder.finish()
    return recorded - start, time.perf_counter() - recorded, time.process_time() - cpu


def rewrite_each(path: Path, images: int) -> float:
    """Seconds to record `images` the old way: the whole lock rewritten after each one."""
    lock = read_lock(path) or Lock()
    start = time.perf_counter()
    for index in range(images):
        lock = lock.with_image(f"image-{index:05d}", image_record(index, "1.0.2"))
        write_lock(path, lock)
    return time.perf_counter() - start


def append_fsync(work: Path, images: int, line: bytes) -> float:
    """Seconds for `images` appends of `line`, each fsynced: how the journal synced before
    (every line also grows the file, so every sync writes metadata too)."""
    fd = os.open(work / "fsync-baseline", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    try:
        start = time.perf_counter()
        for _ in range(images):
            os.write(fd, line)
            os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def preallocated_datasync(work: Path, images: int, line: bytes) -> float:
    """Seconds for `images` writes of `line` into space preallocated by chunks, each
    fdatasynced, without imagectl: the disk's floor for the journal as it is written."""
    fd = os.open(work / "datasync-baseline", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        end = allocated = 0
        for _ in range(images):
            if end + len(line) > allocated:
                os.posix_fallocate(fd, allocated, LockJournal.CHUNK)
                allocated += LockJournal.CHUNK
            os.pwrite(fd, line, end)
            end += len(line)
            os.fdatasync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def measure(work: Path, runs: int, images: int = IMAGES) -> list[Figure]:
    path = work / "imagectl.lock"
    best: tuple[float, float, float] | None = None
    for _ in range(max(runs, 1)):
        write_lock(path, fleet_lock(images))
        took = record_all(path, images)
        best = took if best is None or took[2] < best[2] else best
        check = read_lock(path)
        if check is None or check.images["image-00000"].version != "1.0.1":
            raise AssertionError("the recorded images are not in the compacted lock")
    assert best is not None
    recording, compaction, cpu = best
    line = journal_line(JournalEntry(image="image-00000", record=image_record(0, "1.0.1")))
    disk = min(preallocated_datasync(work, images, line) for _ in range(max(runs, 1)))
    appended = min(append_fsync(work, images, line) for _ in range(max(runs, 1)))
    total = recording + compaction
    sample = min(OLD_WAY_SAMPLE, images)
    write_lock(path, fleet_lock(images))
    old = rewrite_each(path, sample) * images / sample
    return [
        Figure(f"record {images:,} images (journal, fdatasync each)", recording, "s", "time"),
        Figure("compact the journal into the lock (once)", compaction, "s", "time"),
        Figure(f"record {images:,} images: total, wall", total, "s", "time", GOAL_TOTAL),
        Figure("per image", total / images * 1000, "ms", "time"),
        Figure(
            f"the disk alone: {images:,} lines, preallocated, each fdatasynced", disk, "s", "time"
        ),
        Figure(f"the disk, as before: {images:,} appends, each fsynced", appended, "s", "time"),
        Figure("imagectl's own cost: CPU of record and compaction", cpu, "s", "time", GOAL_CPU),
        Figure(
            f"the old way: lock rewritten per image ({sample} measured, x{images // sample})",
            old,
            "s",
            "time",
        ),
    ]
