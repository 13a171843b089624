"""``imagectl.lock``: the record of what was built (docs/design.md section 10).

The lock is YAML with a fixed layout: a header comment, ``format: 1``, then
``bases`` and ``images`` sorted by name, fields in model order, every string
double-quoted, tag lists in flow style. Equal locks give identical bytes, so
git diffs show exactly what changed.

The layout is emitted directly rather than through ruamel.yaml's dumper: for a
fleet of 2,000 images ruamel needs about 4 s to dump and 6 s to load the lock,
which ``plan`` (well under 2 s) and ``apply`` (one atomic write per image) cannot
afford. Reading takes a fast path for exactly that layout; anything else (a hand
edit, a syntax error) is read by ruamel.yaml, which also locates every problem
as ``file:line:col``. The tests check that ruamel reads what we write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from imagectl import lockcache
from imagectl.columnar import values_of
from imagectl.errors import Location, LockFileError, Problem
from imagectl.fsutil import atomic_write, state_dir
from imagectl.manifest.messages import describe_error

LOCK_FORMAT = 1
HEADER = "# imagectl.lock — written by imagectl; do not edit by hand."

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})
_LINE = re.compile(r'( *)([A-Za-z_][A-Za-z0-9_.-]*|"(?:[^"\\]|\\.)*"):(?: (.*))?')
_DIGITS = re.compile(r"(\d+)")
_json = json.JSONEncoder(ensure_ascii=True).encode


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseRecord(_Record):
    """A base reference by tag and the digest it resolved to.

    ``platforms`` (optional, written only when an image declares platforms) maps each
    platform the image was built for to the digest of the base's image for that
    platform: an image is stale when any of them moves. Locks without it read as before.
    """

    ref: str
    digest: str
    platforms: dict[str, str] = Field(default_factory=dict)  # omitted from the file when empty


class ImageRecord(_Record):
    """What was last built for one image.

    ``versions`` maps every version ever recorded for the image to its digest
    (the audit log that prune and the forward-only tag rule read); it always
    includes the current ``version``.
    """

    repository: str
    version: str
    digest: str
    tags: list[str]
    base: BaseRecord
    inputs: str
    built_at: datetime
    revision: str | None
    versions: dict[str, str] = Field(default_factory=dict)
    frontend: str | None = None  # the `# syntax=` frontend pinned by digest; only when used

    @field_validator("built_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_serializer("built_at")
    def _iso_z(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @model_validator(mode="after")
    def _records_current(self) -> ImageRecord:
        if self.versions.get(self.version) != self.digest:
            # frozen model: set once, during validation
            object.__setattr__(self, "versions", {**self.versions, self.version: self.digest})
        return self


class ClaimRecord(_Record):
    """A version an apply reserved in git before pushing it (`apply --git-push`).

    The claim is committed and pushed before any image is; the git push is the
    compare-and-swap the registry lacks. The run that made it replaces it with the
    image's record; a claim whose run died is dropped by the next run (docs/gitops.md).
    """

    version: str
    inputs: str
    host: str
    pid: int
    claimed_at: datetime
    revision: str | None = None

    @field_validator("claimed_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_serializer("claimed_at")
    def _iso_z(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Lock(_Record):
    """The whole lock: external bases followed by digest, built images, open claims.

    ``claims`` is optional and written only while it is not empty, so a lock without
    claims is byte-for-byte what earlier versions wrote.
    """

    format: Literal[1] = 1
    bases: dict[str, BaseRecord] = Field(default_factory=dict)
    images: dict[str, ImageRecord] = Field(default_factory=dict)
    claims: dict[str, ClaimRecord] = Field(default_factory=dict)

    def with_image(self, name: str, record: ImageRecord) -> Lock:
        """A new lock with `record` for image `name`, keeping the versions recorded before."""
        record = keeping_history(self.images.get(name), record)
        return self.model_copy(update={"images": {**self.images, name: record}})

    def with_base(self, name: str, record: BaseRecord) -> Lock:
        """A new lock with `record` for external base `name`."""
        return self.model_copy(update={"bases": {**self.bases, name: record}})


def keeping_history(old: ImageRecord | None, record: ImageRecord) -> ImageRecord:
    """`record`, with the versions `old` (the image's previous record) recorded before."""
    if old is None:
        return record
    return record.model_copy(update={"versions": {**old.versions, **record.versions}})


# --------------------------------------------------------------------------- writing


@functools.lru_cache(maxsize=8192)  # the same few versions recur across a fleet's histories
def _version_order(version: str) -> tuple[str | int, ...]:
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(version)))


@functools.lru_cache(maxsize=4096)
def _key(text: str) -> str:
    if _PLAIN_KEY.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return _json(text)


def _scalar(value: Any) -> str:
    if isinstance(value, str):  # most values: what _json writes for a string, without its checks
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _json(value)  # a JSON scalar or list is a YAML flow scalar or sequence


def _emit(lines: list[str], key: str, value: Any, indent: int) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            lines.append(f"{pad}{_key(key)}: {{}}")
            return
        lines.append(f"{pad}{_key(key)}:")
        inner = pad + "  "
        for child_key, child in value.items():
            if isinstance(child, dict):
                _emit(lines, child_key, child, indent + 2)
            else:  # a leaf, inline: most lines of a lock
                lines.append(f"{inner}{_key(child_key)}: {_scalar(child)}")
        return
    lines.append(f"{pad}{_key(key)}: {_scalar(value)}")


def _base_data(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped BaseRecord as written: ``platforms`` only when there are some."""
    if not data.get("platforms"):
        data.pop("platforms", None)
    return data


def render_lock(lock: Lock) -> str:
    """The text of `lock` as written to ``imagectl.lock`` (stable for equal locks)."""
    bases = {
        name: _base_data(lock.bases[name].model_dump(mode="json")) for name in sorted(lock.bases)
    }
    images: dict[str, Any] = {}
    for name in sorted(lock.images):
        data = lock.images[name].model_dump(mode="json")
        if data["frontend"] is None:
            del data["frontend"]  # absent, not null: locks without frontends stay as they were
        _base_data(data["base"])
        data["versions"] = {
            v: data["versions"][v] for v in sorted(data["versions"], key=_version_order)
        }
        images[name] = data
    lines = [HEADER]
    _emit(lines, "format", lock.format, 0)
    _emit(lines, "bases", bases, 0)
    _emit(lines, "images", images, 0)
    if lock.claims:
        claims = {name: lock.claims[name].model_dump(mode="json") for name in sorted(lock.claims)}
        _emit(lines, "claims", claims, 0)
    return "\n".join(lines) + "\n"


def write_lock(path: Path, lock: Lock) -> None:
    """Write `lock` to `path` atomically: temp file in the same directory, fsync, rename.

    A reader sees the old lock or the new one, never a torn file; on failure no
    temporary file is left behind and the old lock is untouched. The journal beside
    the lock, if any, is removed: `lock` is the whole record (callers write what
    `read_lock`, which replays the journal, returned, plus their change).

    Raises:
        LockFileError: the file cannot be written.
    """
    try:
        atomic_write(path, render_lock(lock).encode("utf-8"))
    except OSError as exc:
        raise LockFileError(f"{path}: cannot write the lock: {exc.strerror or exc}") from exc
    # The lock written is the whole record: a journal beside it is superseded. Were this
    # unlink lost in a crash, the journal's header no longer matches the lock: ignored.
    journal_path(path).unlink(missing_ok=True)


def lock_fingerprint(path: Path) -> str:
    """``sha256:<hex>`` of the lock file's bytes, or of empty bytes when there is no lock."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise LockFileError(f"{path}: cannot read the lock: {exc.strerror or exc}") from exc
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- reading


class _NotCanonical(Exception):
    pass


def _fast_value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == '"' and text.isprintable():
        inner = text[1:-1]
        if "\\" not in inner and '"' not in inner:
            return inner
    try:
        return json.loads(text)
    except ValueError:
        raise _NotCanonical from None


def _fast_parse(text: str) -> Any:
    """Parse exactly the layout `render_lock` writes; raise _NotCanonical for anything else.

    Every value is a JSON scalar, list or ``{}``, which YAML reads identically.
    """
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]
    open_key: tuple[int, dict[str, Any], str] | None = None
    for raw in text.split("\n"):
        line = raw.rstrip("\r").rstrip(" ")
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise _NotCanonical
        indent = len(match.group(1))
        key_text, value = match.group(2), match.group(3)
        if key_text.startswith('"'):
            key = _fast_value(key_text)
        elif key_text.lower() in _RESERVED:
            raise _NotCanonical
        else:
            key = key_text
        if open_key is not None:
            parent_indent, parent, parent_key = open_key
            if indent > parent_indent:
                child: dict[str, Any] = {}
                parent[parent_key] = child
                stack.append((indent, child))
            open_key = None
        while stack[-1][0] > indent:
            stack.pop()
        level, mapping = stack[-1]
        if level != indent or key in mapping:
            raise _NotCanonical
        if value is None or value == "":
            mapping[key] = None
            open_key = (indent, mapping, key)
        else:
            mapping[key] = _fast_value(value)
    return root


def _display(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


MAX_DEPTH = 64


class _TooLarge(Exception):
    """The document expands (through YAML aliases) or nests beyond what a lock can hold."""


def _plain(node: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """Plain Python data from a round-trip document, bounded in size and depth.

    `budget` counts the nodes left to produce: aliases are shared in the loaded
    document but expanded here, so a "billion laughs" lock would otherwise take
    hours and all memory.
    """
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise _TooLarge
    if isinstance(node, dict):
        return {str(key): _plain(value, budget, depth + 1) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item, budget, depth + 1) for item in node]
    if isinstance(node, datetime):  # ruamel's TimeStamp subclass -> a plain datetime
        return datetime(*node.timetuple()[:6], node.microsecond, tzinfo=node.tzinfo)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def _load_located(text: str, display: str) -> Any:
    """Load with ruamel's round-trip loader, keeping positions; syntax errors are located."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise LockFileError(str(Problem(where, f"YAML syntax error: {message}"))) from None
    except RecursionError:
        raise LockFileError(
            f"{display}:1:1: the lock nests deeper than {MAX_DEPTH} levels"
        ) from None
    except Exception as exc:  # ruamel raises a few unmarked errors (bad tags)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LockFileError(f"{display}:1:1: YAML error: {first}") from None


def _plain_bounded(doc: Any, text: str, display: str) -> Any:
    """`_plain` of a loaded lock, refusing alias bombs and deep nesting, located."""
    # Without aliases a document has fewer nodes than characters; allow modest alias use.
    budget = [2 * len(text) + 10_000]
    try:
        return _plain(doc, budget)
    except (_TooLarge, RecursionError):
        raise LockFileError(
            f"{display}:1:1: the lock is too large after expanding YAML aliases, or nests "
            f"deeper than {MAX_DEPTH} levels (imagectl never writes anchors or aliases)"
        ) from None


def _start(doc: Any) -> str:
    """`:line:col` of where a round-trip document starts (after any header comment)."""
    lc = getattr(doc, "lc", None)
    line, col = (getattr(lc, "line", None), getattr(lc, "col", None))
    if isinstance(line, int) and isinstance(col, int):
        return f":{line + 1}:{col + 1}"
    return ":1:1"


def _position(doc: Any, loc: tuple[str | int, ...], *, at_key: bool) -> tuple[int, int]:
    """1-based (line, column) of `loc` in a round-trip document, else of its nearest parent."""
    node, found = doc, (1, 1)
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part) if (at_key or not last) else node.lc.value(part)
            found = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            found = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return found


def _key_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _check_format(data: Any, doc: Any, display: str) -> None:
    where = display + (_start(doc) if doc is not None else ":1:1")
    if not isinstance(data, dict):
        raise LockFileError(f"{where}: imagectl.lock must be a mapping with `format: 1` at the top")
    if "format" not in data:
        raise LockFileError(
            f"{where}: imagectl.lock has no `format`; this imagectl reads format "
            f"{LOCK_FORMAT} (was the file written by imagectl?)"
        )
    value = data["format"]
    if isinstance(value, int) and not isinstance(value, bool) and value == LOCK_FORMAT:
        return
    line, col = _position(doc, ("format",), at_key=False) if doc is not None else (0, 0)
    shown = value if isinstance(value, int) and not isinstance(value, bool) else repr(value)
    message = (
        f"imagectl.lock format {shown} is not supported by this imagectl (supports {LOCK_FORMAT})"
    )
    if isinstance(value, int) and not isinstance(value, bool) and value > LOCK_FORMAT:
        message += "; upgrade imagectl"
    raise LockFileError(str(Problem(Location(display, line, col), message)))


def _validation_problems(exc: ValidationError, doc: Any, display: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        hint = ""
        if kind == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
            line, col = _position(doc, loc, at_key=True)
        elif kind == "missing":
            message = f"missing key '{loc[-1]}'"
            line, col = _position(doc, loc[:-1], at_key=True)
        else:
            message, hint = describe_error(Lock, error)  # in plain words, not pydantic's
            line, col = _position(doc, loc, at_key=False)
        problems.append(Problem(Location(display, line, col), message, _key_path(loc), hint))
    return sorted(problems, key=lambda p: (p.location, p.key_path))


def read_lock(path: Path) -> Lock | None:
    """Read ``imagectl.lock`` with its journal replayed; None when neither exists.

    The records an apply journalled (and has not yet compacted into the lock, or never
    will: it was killed) are part of the lock for every reader: plan, status, claims.

    Raises:
        LockFileError: the file is unreadable, not YAML, of another format, or has
            wrong types or unknown keys; each problem located as ``file:line:col``.
    """
    display = _display(path)
    journal = _read_journal_bytes(journal_path(path))
    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        if not journal:
            return None
        raw = None  # records journalled before the lock was first written
    except OSError as exc:
        raise LockFileError(f"{display}: cannot read the lock: {exc.strerror or exc}") from exc
    lock_digest = hashlib.sha256(raw or b"").digest()
    lock = Lock() if raw is None else _parse_lock(raw, display, path, lock_digest.hex())
    if journal:
        lock = replay_journal(lock, journal, "sha256:" + lock_digest.hex(), journal_path(path))
    return lock


def lock_stamp(path: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """What tells whether the lock (or its journal) changed since a read: inode, size
    and mtime of each, None for a missing file. `apply` reads the lock before taking the
    apply mutex (a bad lock must fail before anything is written) and reads it again
    under the mutex only when the stamp changed (another apply finished meanwhile)."""
    stamps: list[tuple[int, int, int] | None] = []
    for file in (path, journal_path(path)):
        try:
            info = file.stat()
        except OSError:
            stamps.append(None)
            continue
        stamps.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


# --------------------------------------------------------------------------- journal

JOURNAL_FORMAT = 1


def journal_path(lock_path: Path) -> Path:
    """``.imagectl/imagectl.lock.journal`` beside the lock (never committed: .imagectl/
    ignores itself in git)."""
    return lock_path.parent / ".imagectl" / f"{lock_path.name}.journal"


class JournalEntry(_Record):
    """One line of the journal: an image recorded, with the external bases it used."""

    image: str
    record: ImageRecord
    bases: dict[str, BaseRecord] = Field(default_factory=dict)


def apply_entry(lock: Lock, entry: JournalEntry) -> Lock:
    """`lock` with the image (and its external bases) of `entry` recorded."""
    lock = lock.with_image(entry.image, entry.record)
    for name, base in entry.bases.items():
        lock = lock.with_base(name, base)
    return lock


def journal_header(lock_fingerprint: str) -> bytes:
    """The first line of a journal started on the lock whose bytes hash to `lock_fingerprint`."""
    return (_json({"journal": JOURNAL_FORMAT, "lock": lock_fingerprint}) + "\n").encode()


def journal_line(entry: JournalEntry) -> bytes:
    """One JSON line for `entry`: pydantic's own JSON writer, fields at their default (no
    ``frontend``, no base ``platforms``, no ``bases``) left out as the lock leaves them out.
    JSON escapes every control character, so a line holds no raw newline and no NUL."""
    return (entry.model_dump_json(exclude_defaults=True) + "\n").encode()


def _read_journal_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise LockFileError(f"{path}: cannot read the lock journal: {exc.strerror or exc}") from exc


def journal_entries(data: bytes, lock_fingerprint: str, path: Path) -> list[JournalEntry]:
    """The entries of a journal's bytes, when it was started on the lock `lock_fingerprint`.

    Only complete lines count: bytes after the last newline are an append torn by a
    crash and are ignored, and so is everything from the first NUL byte on (the
    zeros of the space `LockJournal` preallocates; no line contains a NUL). A journal
    started on another lock (the lock was rewritten since, and the journal's removal
    was lost) is stale: no entries.

    Raises:
        LockFileError: a complete line is not a journal entry, located as ``file:line``.
    """
    end = data.find(b"\0")
    if end >= 0:  # the preallocated tail a killed run leaves: zeros after the last line
        data = data[:end]
    lines = data.split(b"\n")[:-1]  # the last part is empty or a torn append
    if not lines:
        return []
    display = _display(path)
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("journal") != JOURNAL_FORMAT:
        raise LockFileError(
            f"{display}:1: not an imagectl lock journal of format {JOURNAL_FORMAT} "
            "(delete it to drop the records it holds)"
        )
    if header.get("lock") != lock_fingerprint:
        return []
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            entries.append(JournalEntry.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise LockFileError(
                f"{display}:{number}: invalid journal entry"
                + (f" at {where}" if where else "")
                + f": {first['msg']} (delete the journal to drop the records it holds)"
            ) from None
    return entries


def replay_journal(lock: Lock, data: bytes, lock_fingerprint: str, path: Path) -> Lock:
    """`lock` with every entry of the journal `data` recorded, in order."""
    for entry in journal_entries(data, lock_fingerprint, path):
        lock = apply_entry(lock, entry)
    return lock


def compact_journal(path: Path) -> bool:
    """Fold a journal left beside the lock at `path` into the lock; True when there was one.

    Raises:
        LockFileError: the lock or the journal cannot be read, or the lock not written.
    """
    if not journal_path(path).exists():
        return False
    write_lock(path, read_lock(path) or Lock())
    return True


class LockJournal:
    """Appends records to the journal of the lock at `lock_path`, each durable before
    `sync` returns: O(1) per image, whatever the size of the lock.

    The file is preallocated in chunks (`CHUNK`, ``posix_fallocate``) and each line is
    written at its offset, so that making a line durable is an ``fdatasync`` of data
    alone: the file's size changes once per chunk, not once per line. A run killed
    before `close` leaves zeros after its last line; readers stop at the first NUL.
    `close` cuts the file to its lines. Where preallocation is not supported the lines
    simply extend the file (``fdatasync`` then also makes the new size durable).
    """

    CHUNK = 1 << 20

    def __init__(self, lock_path: Path) -> None:
        self.lock_path = lock_path
        self.path = journal_path(lock_path)
        self._fd: int | None = None
        self._end = 0  # where the next line goes
        self._allocated = 0  # bytes of the file preallocated (its size)
        self._preallocate = hasattr(os, "posix_fallocate")
        self._mutex = threading.Lock()  # offsets, for records written by several threads

    def _open(self) -> int:
        state_dir(self.path.parent.parent)  # .imagectl/ with its .gitignore
        # the journal appears with its header, never without (a new one replaces any old)
        header = journal_header(lock_fingerprint(self.lock_path))
        atomic_write(self.path, header)
        fd = os.open(self.path, os.O_WRONLY)
        self._end = self._allocated = len(header)
        return fd

    def _reserve(self, fd: int, size: int) -> None:
        """Preallocate so that `size` more bytes fit (best effort)."""
        if not self._preallocate or self._end + size <= self._allocated:
            return
        grow = max(self.CHUNK, size)
        try:
            os.posix_fallocate(fd, self._allocated, grow)
        except OSError:  # e.g. a file system without it: lines extend the file instead
            self._preallocate = False
            return
        self._allocated += grow

    def append(self, entry: JournalEntry) -> None:
        """Append `entry` and sync it: durable on return."""
        self.write(entry)
        self.sync()

    def write(self, entry: JournalEntry) -> None:
        """Write `entry` as the next line (not yet durable: see `sync`).

        Raises:
            LockFileError: the journal cannot be written.
        """
        line = journal_line(entry)
        try:
            with self._mutex:
                if self._fd is None:
                    self._fd = self._open()
                self._reserve(self._fd, len(line))
                os.pwrite(self._fd, line, self._end)
                self._end += len(line)
        except OSError as exc:
            raise LockFileError(
                f"{self.path}: cannot write the lock journal: {exc.strerror or exc}"
            ) from exc

    def sync(self) -> None:
        """Make every line written so far durable (one sync covers the writes of every
        thread): ``fdatasync``, the data and what reading it back needs, not the times.

        Raises:
            LockFileError: the journal cannot be synced.
        """
        fd = self._fd
        if fd is None:
            return
        try:
            _datasync(fd)
        except OSError as exc:
            raise LockFileError(
                f"{self.path}: cannot write the lock journal: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        """Close the journal, cut to its lines (the preallocated zeros dropped)."""
        with self._mutex:
            if self._fd is not None:
                try:
                    if self._allocated > self._end:
                        os.ftruncate(self._fd, self._end)
                finally:
                    os.close(self._fd)
                    self._fd = None

    @property
    def started(self) -> bool:
        return self._fd is not None


_datasync = getattr(os, "fdatasync", os.fsync)


def _parse_lock(raw: bytes, display: str, path: Path, digest: str) -> Lock:
    """The lock of `raw` (the bytes of `path`, whose sha256 is `digest`): from the parse
    cache (`imagectl.lockcache`) when it holds these bytes, else parsed and cached."""
    cached = _from_validated(lockcache.load(path, digest))
    if cached is not None:
        return cached
    lock, canonical = _parse_lock_text(raw, display)
    if canonical is not None:
        lockcache.store(path, digest, lock.model_dump(mode="json"))
    return lock


_IMAGE_FIELDS = frozenset(ImageRecord.model_fields)
_IMAGE_ORDER = list(ImageRecord.model_fields)
_BASE_FIELDS = frozenset(BaseRecord.model_fields)


def _from_validated(data: Any) -> Lock | None:
    """The lock whose validated form (`Lock.model_dump(mode="json")`, its images as
    `lockcache.compact` stores them) is `data`, built without validating again, or None
    when `data` has another shape.

    Only for data the parse cache proves unchanged since imagectl validated it
    (`lockcache`): every image and base has exactly the model's fields, and the values
    are what validation gave (times in UTC, each version in ``versions``). Building
    10,000 records this way costs a third of validating them. Each distinct base record
    and build time is built once and shared (both are immutable); each record gets its
    own ``tags`` list and ``versions`` mapping. A lock with claims (rare, small) is
    validated as usual.
    """
    try:
        if data is None or set(data) != {"format", "bases", "images", "claims"}:
            return None
        if data["format"] != LOCK_FORMAT:
            return None
        if data["claims"]:
            return Lock.model_validate(lockcache.expand(data))
        bases = {name: _validated(BaseRecord, _BASE_FIELDS, b) for name, b in data["bases"].items()}
        table = data["images"]
        if table["fields"] != _IMAGE_ORDER and table["rows"]:
            return None
        columns = list(table["values"])
        if table["rows"]:
            at = _IMAGE_ORDER.index
            base, built_at = at("base"), at("built_at")
            columns[base] = [_validated(BaseRecord, _BASE_FIELDS, b) for b in columns[base]]
            columns[built_at] = [datetime.fromisoformat(t) for t in columns[built_at]]
        images: dict[str, ImageRecord] = {}
        for name, row in table["rows"].items():
            values = dict(zip(_IMAGE_ORDER, values_of(columns, row), strict=True))
            values["tags"] = list(values["tags"])
            values["versions"] = dict(values["versions"])
            images[name] = _built(ImageRecord, _IMAGE_FIELDS, values)  # keys: _IMAGE_ORDER
        return Lock.model_construct(format=1, bases=bases, images=images, claims={})
    except (ValidationError, _NotValidated, LookupError, TypeError, ValueError, AttributeError):
        return None


_M = TypeVar("_M", bound=BaseModel)


class _NotValidated(Exception):
    """Cached data that is not the validated form of a record."""


def _validated(cls: type[_M], fields: frozenset[str], values: Any) -> _M:
    """An instance of `cls` with `values` (a dict holding exactly `fields`, already
    validated), as `model_construct` makes it, without its per-field work."""
    if not isinstance(values, dict) or values.keys() != fields:
        raise _NotValidated(cls.__name__)
    return _built(cls, fields, values)


def _built(cls: type[_M], fields: frozenset[str], values: dict[str, Any]) -> _M:
    """`_validated` for a dict known to hold exactly `fields` (made from them)."""
    record = _new(cls)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(fields))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


_new = object.__new__  # what BaseModel.__new__ is, without the lookup
_set = object.__setattr__


def _parse_lock_text(raw: bytes, display: str) -> tuple[Lock, Any]:
    """(the lock, its plain data when it has the layout `render_lock` writes, else None)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LockFileError(f"{display}:{line}: the lock is not valid UTF-8") from None
    doc: Any = None
    try:
        data = _fast_parse(text)
    except _NotCanonical:
        doc = _load_located(text, display)
        data = _plain_bounded(doc, text, display)
    version = data.get("format") if isinstance(data, dict) else None
    if doc is None and (isinstance(version, bool) or version != LOCK_FORMAT):
        doc = _load_located(text, display)  # only to locate the format problem
    _check_format(data, doc, display)
    try:
        return Lock.model_validate(data), data if doc is None else None
    except ValidationError as exc:
        if doc is None:
            doc = _load_located(text, display)
        problems = _validation_problems(exc, doc, display)
        raise LockFileError("\n".join(str(p) for p in problems)) from None


__all__ = [
    "HEADER",
    "JOURNAL_FORMAT",
    "LOCK_FORMAT",
    "BaseRecord",
    "ClaimRecord",
    "ImageRecord",
    "JournalEntry",
    "Lock",
    "LockJournal",
    "apply_entry",
    "compact_journal",
    "journal_line",
    "journal_path",
    "keeping_history",
    "lock_fingerprint",
    "lock_stamp",
    "read_lock",
    "render_lock",
    "replay_journal",
    "write_lock",
]
