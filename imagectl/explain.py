"""`imagectl plan --explain IMAGE`: the evidence behind each reason an image is planned.

The lock keeps one inputs digest per image, which says *that* the inputs changed,
not *what* changed. So every plan also remembers, per inputs digest, what went into
it: the build parameters and the per-file digests of the context. They are stored
in ``.imagectl/cache/inputs/`` (never the lock, never committed): one file per
distinct context (named by its digest) and one journal line per inputs digest, so
each is written once, a fleet's first plan writes one file per context rather than
one per image, and any machine that planned a state can explain a change from it.
``--explain`` compares the snapshot of the last build's inputs digest with the
current one. Without that snapshot (a fresh clone, ``IMAGECTL_NO_CACHE=1``) it
says so instead of guessing.

Reading and writing snapshots is I/O; `explain_lines` is pure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from imagectl.domain.reference import without_digest
from imagectl.domain.schedules import parse_schedule
from imagectl.errors import ImagectlError, UsageError
from imagectl.fsutil import state_dir
from imagectl.inputs import ContextHasher, image_params
from imagectl.lint.dockerfile_rules import looks_secret
from imagectl.manifest.cache import enabled as cache_enabled
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import Action, BuiltState, Observed, StaleReason

FORMAT = 1
_LIST_LIMIT = 50  # file names shown per kind of change; the counts are always complete


@dataclass(frozen=True)
class Snapshot:
    """What one inputs digest was made of.

    Attributes:
        files: context path -> ``<kind>:<sha256 or link target>`` (kinds as in inputs.py).
        dockerfile: the sha256 of the Dockerfile's content.
        params: the build parameters, as hashed.
    """

    files: dict[str, str]
    dockerfile: str
    params: dict[str, Any]


def snapshot_dir(root: Path) -> Path:
    """Where the snapshots of the manifest rooted in directory `root` live."""
    return root / ".imagectl" / "cache" / "inputs"


_JOURNAL = "inputs.jsonl"  # one line per inputs digest: ``sha256:<hex> {json}``
_KEY_LENGTH = len("sha256:") + 64
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # one encoder for every record


def _name(digest: str) -> str:
    return digest.removeprefix("sha256:") + ".json"


def _write(path: Path, data: dict[str, Any]) -> None:
    """Create a cache file once (a file already there is kept: its name is its content).

    No temporary file and no fsync: a file torn by a crash reads as no snapshot,
    which explain reports as such.
    """
    text = _JSON.encode(data)
    with contextlib.suppress(FileExistsError), open(path, "x", encoding="utf-8") as handle:
        handle.write(text)


def _journal(where: Path) -> bytes:
    try:
        return (where / _JOURNAL).read_bytes()
    except FileNotFoundError:
        return b""


def _stored(lines: list[bytes]) -> set[str]:
    """The inputs digests the journal holds whole (a line torn by a crash does not count)."""
    return {line[:_KEY_LENGTH].decode("ascii", "replace") for line in lines if line.endswith(b"}")}


def _append(path: Path, lines: list[str]) -> None:
    """Append whole lines in one ``write`` (O_APPEND: concurrent plans never interleave)."""
    data = "".join(lines).encode("utf-8", "surrogateescape")
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(handle, data) :]
    finally:
        os.close(handle)


def _context_record(image: ImageConfig, hasher: ContextHasher) -> dict[str, Any]:
    entries = hasher.context_files(image.context, image.dockerfile, image.builder)
    with open(image.dockerfile, "rb") as handle:
        dockerfile = hashlib.file_digest(handle, "sha256").hexdigest()
    files = {e.rel: f"{e.kind}:{e.payload}" for e in entries}
    return {"format": FORMAT, "files": files, "dockerfile": dockerfile}


def take_snapshot(image: ImageConfig, hasher: ContextHasher, frontend: str | None) -> Snapshot:
    """What `image`'s inputs are made of now.

    Raises:
        OSError: the Dockerfile cannot be read.
        ImagectlError: the context cannot be read.
    """
    record = _context_record(image, hasher)
    return Snapshot(record["files"], record["dockerfile"], image_params(image, frontend))


def remember(
    manifest: Manifest,
    hasher: ContextHasher,
    inputs: Mapping[str, str],
    frontends: Mapping[str, str],
) -> None:
    """Store the snapshot of each image's current inputs digest, unless it is stored already.

    The file list of each distinct context goes to its own content-addressed file;
    the parameters of each new inputs digest are one line appended to a journal, all
    of a plan's lines in one write. A plan that finds everything stored reads the
    journal and writes nothing. Best effort: a cache that cannot be written never
    fails a plan.
    """
    if not cache_enabled():
        return
    where = snapshot_dir(manifest.root_dir)
    try:
        state_dir(manifest.root_dir)  # .imagectl/ ignores itself in git
        where.mkdir(parents=True, exist_ok=True)
        journal = _journal(where)
        known = _stored(journal.splitlines())
        contexts: set[str] | None = None
        lines: list[str] = []
        for name, image in manifest.images.items():
            digest = inputs.get(name)
            if digest is None or digest in known:
                continue
            if contexts is None:  # something new: list the context files once
                contexts = {p.name for p in where.iterdir()}
            context = hasher.context_digest(image.context, image.dockerfile, image.builder)
            if "context-" + _name(context) not in contexts:
                _write(where / ("context-" + _name(context)), _context_record(image, hasher))
                contexts.add("context-" + _name(context))
            record = {
                "format": FORMAT,
                "context": context,
                "params": image_params(image, frontends.get(name)),
            }
            lines.append(f"{digest} {_JSON.encode(record)}\n")
            known.add(digest)
        if lines:
            if journal and not journal.endswith(b"\n"):  # a line torn by a crash: end it
                lines.insert(0, "\n")
            _append(where / _JOURNAL, lines)
    except (OSError, ImagectlError):
        return


def _inputs_record(where: Path, digest: str) -> Any:
    """The journal's record of `digest` (or the file of an older cache), None when absent."""
    key = digest.encode("ascii", "replace") + b" "
    for line in reversed(_journal(where).splitlines()):
        if line.startswith(key):
            return json.loads(line[len(key) :])
    older = where / _name(digest)  # caches written before the journal: one file per digest
    return json.loads(older.read_text(encoding="utf-8")) if older.is_file() else None


def load_snapshot(root: Path, digest: str) -> Snapshot | None:
    """The snapshot of inputs digest `digest`, or None when none is stored (or it is unreadable)."""
    where = snapshot_dir(root)
    try:
        record = _inputs_record(where, digest)
        if record is None:
            return None
        context = json.loads((where / ("context-" + _name(record["context"]))).read_text())
        return Snapshot(dict(context["files"]), str(context["dockerfile"]), dict(record["params"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------ pure


def _short(digest: str | None) -> str:
    return (digest or "?")[:19] + ("…" if digest and len(digest) > 19 else "")


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def file_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Lines naming the files added (+), removed (-) and changed (~) between two snapshots."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    if not (added or removed or changed):
        return []
    counts = f"{len(added)} added, {len(changed)} changed, {len(removed)} removed"
    lines = [f"context files: {counts}"]
    for mark, paths in (("+", added), ("~", changed), ("-", removed)):
        lines += [f"  {mark} {path}" for path in paths[:_LIST_LIMIT]]
        if len(paths) > _LIST_LIMIT:
            lines.append(f"  {mark} … and {len(paths) - _LIST_LIMIT} more")
    return lines


def _value(key: str, value: object) -> str:
    if looks_secret(key, str(value)):
        return "(value not shown)"
    return json.dumps(value, ensure_ascii=False)


def param_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Lines naming each build parameter that changed (build args one by one)."""
    lines: list[str] = []
    old_args, new_args = dict(old.get("args") or {}), dict(new.get("args") or {})
    for key in sorted(set(old_args) | set(new_args)):
        if old_args.get(key) != new_args.get(key):
            before = _value(key, old_args[key]) if key in old_args else "(unset)"
            after = _value(key, new_args[key]) if key in new_args else "(unset)"
            lines.append(f"build arg {key}: {before} -> {after}")
    for key in sorted((set(old) | set(new)) - {"args"}):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {_value(key, old.get(key))} -> {_value(key, new.get(key))}")
    return lines


def _inputs_lines(
    image: ImageConfig, root: Path, old: Snapshot | None, new: Snapshot | None
) -> list[str]:
    if old is None or new is None:
        return [
            "no snapshot of the last build's inputs on this machine (they are kept in "
            ".imagectl/cache/inputs by each plan); what changed cannot be shown"
        ]
    lines = file_changes(old.files, new.files)
    if old.dockerfile != new.dockerfile:
        lines.append(f"Dockerfile {os.path.relpath(image.dockerfile, root)} changed")
    lines += param_changes(old.params, new.params)
    return lines or ["the inputs digest changed, but no file or parameter did (another version?)"]


def explain_lines(
    action: Action,
    image: ImageConfig,
    built: BuiltState | None,
    now: datetime,
    root: Path,
    old: Snapshot | None,
    new: Snapshot | None,
) -> list[str]:
    """The evidence for each reason `action` plans `image`, as indented lines."""
    lines = [f"{action.image} {action.from_version or '(new)'} -> {action.to_version}"]
    for reason in action.reasons:
        evidence: list[str] = []
        if reason is StaleReason.NEW:
            evidence = ["no build recorded, in the lock or in the registry"]
        elif reason is StaleReason.VERSION_CHANGED and built is not None:
            evidence = [f"version: {image.version!r} declared; the last build is {built.version}"]
        elif reason is StaleReason.INPUTS_CHANGED:
            evidence = _inputs_lines(image, root, old, new)
        elif reason is StaleReason.BASE_UPDATED and built is not None:
            evidence = [
                f"base {action.base.name} follows {action.base.ref}",
                f"{_short(built.base_digest)} -> {_short(action.base.digest)}",
            ]
            if built.base_ref and without_digest(built.base_ref) != action.base.ref:
                evidence.insert(1, f"reference {built.base_ref} -> {action.base.ref}")
        elif reason is StaleReason.BASE_REBUILT and built is not None:
            after = _short(action.base.digest) if action.base.digest else "built in this plan"
            evidence = [
                f"base image {action.base.name} ({action.base.ref})",
                f"{_short(built.base_digest)} -> {after}",
            ]
        elif reason is StaleReason.SCHEDULE_DUE and built is not None:
            occurrence = parse_schedule(image.rebuild).latest_occurrence(now, since=built.built_at)
            when = _moment(occurrence) if occurrence else "?"
            evidence = [
                f"rebuild: {image.rebuild!r} fell due at {when}; "
                f"the last build was at {_moment(built.built_at)}"
            ]
        elif reason is StaleReason.MISSING and built is not None:
            evidence = [f"{action.repository}:{built.version} is not in the registry"]
        elif reason is StaleReason.FORCED:
            evidence = ["asked for with --force"]
        lines.append(f"  {reason}:")
        lines += [f"    {line}" for line in evidence]
    return lines


def explain_command(
    manifest: Manifest,
    name: str,
    observed: Observed,
    action: Action | None,
    now: datetime,
    console: Console,
) -> None:
    """Print the evidence behind `name`'s place in the plan (or that it is up to date).

    Raises:
        UsageError: no image is called `name`.
    """
    image = manifest.images.get(name)
    if image is None:
        known = ", ".join(sorted(manifest.images)) or "none"
        raise UsageError(f"--explain {name}: no such image (images: {known})")
    built = observed.built.get(name)
    if action is None:
        when = f" at {_moment(built.built_at)}" if built is not None else ""
        version = built.version if built is not None else "?"
        console.print(f"{name} is up to date: {version} built{when}", markup=False)
        return
    root = manifest.root_dir
    old = load_snapshot(root, built.inputs) if built is not None else None
    new = load_snapshot(root, observed.inputs.get(name, ""))
    if new is None:  # the cache is off: the current side is known anyway
        new = take_snapshot(image, ContextHasher(root), observed.frontends.get(name))
    for line in explain_lines(action, image, built, now, root, old, new):
        console.print(line, markup=False, highlight=False)


__all__ = [
    "Snapshot",
    "explain_command",
    "explain_lines",
    "file_changes",
    "load_snapshot",
    "param_changes",
    "remember",
    "snapshot_dir",
    "take_snapshot",
]
