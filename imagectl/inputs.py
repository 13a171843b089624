"""The inputs digest of an image build (docs/design.md section 4, ``inputs-changed``).

An image's inputs are its build context as its builder selects it (the ignore file
that builder reads, see `ignore_candidates`), its Dockerfile, and its build
parameters. The digest depends only on relative paths, content, the
owner-executable bit and symlink targets: never on mtimes, owners, the checkout's
location or the walk order, so the same tree on another machine or in another
clone gives the same digest.

Some paths are never inputs, at any depth of any context: ``.git`` and imagectl's
own state (``.imagectl/``, ``imagectl.lock``, ``.imagectl.lock.*``). Each of them
changes on every apply, so counting them would make an image whose context is the
repository root rebuild forever. The builders do not send them either: they build
from a staged copy of exactly the files listed here (`imagectl.staging`), so what
the digest covers is what the builder sends. Directories count only through the
files below them (git does not keep empty directories, so counting them would
differ between checkouts).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl.dockerignore import IgnoreRules, MatchInfo
from imagectl.errors import ImagectlError
from imagectl.filedigests import FileDigests, Stamp, now_ns, stat_key

if TYPE_CHECKING:
    from imagectl.manifest.models import ImageConfig

_CONTEXT_VERSION = b"imagectl-context-v1\n"
_INPUTS_VERSION = b"imagectl-inputs-v1\n"
# One encoder for every inputs digest: `json.dumps` with options builds a new one per call.
_PARAMS_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_STATE_NAMES = frozenset({"imagectl.lock", ".imagectl"})
_STATE_PREFIX = ".imagectl.lock."  # the lock's temporary files, a mutex file
DEFAULT_BUILDER = "docker"


def never_sent(name: str) -> bool:
    """Whether a directory entry named `name` is left out of every context, at any depth."""
    return name == ".git" or name in _STATE_NAMES or name.startswith(_STATE_PREFIX)


def ignore_candidates(builder: str, context: str, dockerfile: str) -> tuple[str, ...]:
    """The ignore files `builder` looks for, first found wins (they are never merged).

    docker (BuildKit): ``<Dockerfile>.dockerignore`` beside the Dockerfile, then
    ``<context>/.dockerignore``. buildah (verified with 1.28):
    ``<Dockerfile>.dockerignore``, ``<Dockerfile>.containerignore``, then
    ``<context>/.containerignore``, then ``<context>/.dockerignore``.
    """
    if builder == "buildah":
        return (
            dockerfile + ".dockerignore",
            dockerfile + ".containerignore",
            os.path.join(context, ".containerignore"),
            os.path.join(context, ".dockerignore"),
        )
    return (dockerfile + ".dockerignore", os.path.join(context, ".dockerignore"))


def _ignore_file(builder: str, context: str, dockerfile: str) -> str | None:
    """The ignore file `builder` reads for this context and Dockerfile (None: none)."""
    return next(
        (p for p in ignore_candidates(builder, context, dockerfile) if os.path.isfile(p)), None
    )


def dockerfile_names(builder: str) -> tuple[str, str]:
    """The Dockerfile names `builder` looks for when none is given, preferred first.

    buildah prefers ``Containerfile``; docker is always given ``--file``, so an image
    with only a ``Containerfile`` builds with docker too.
    """
    return (
        ("Containerfile", "Dockerfile") if builder == "buildah" else ("Dockerfile", "Containerfile")
    )


@dataclass(frozen=True)
class ContextFile:
    """One entry a builder sends: a file, an executable, a symlink or another kind.

    Attributes:
        rel: the path inside the context, ``/``-separated.
        path: the absolute path on this machine.
        kind: ``f`` file, ``x`` owner-executable file, ``l`` symlink, ``o`` other.
        payload: the sha256 of a file's content, a symlink's target text, else "".
    """

    rel: str
    path: str
    kind: str
    payload: str

    def record(self) -> bytes:
        """The line this entry adds to the context digest."""
        return (
            self.kind.encode()
            + b"\0"
            + _fs_bytes(self.rel)
            + b"\0"
            + _fs_bytes(self.payload)
            + b"\n"
        )


def _fs_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _stamp(path: str, follow: bool) -> Stamp:
    return (path, follow, stat_key(os.stat(path) if follow else os.lstat(path)))


class ContextHasher:
    """Hashes build contexts, each distinct (context, ignore rules) pair once.

    One hasher serves one plan: results are cached for its lifetime, so 2,000
    images sharing 100 contexts walk 100 trees. Safe to share between threads.

    Attributes:
        walks: how many context trees were actually walked (cache misses).
    """

    def __init__(self, root: Path | None = None, file_cache: FileDigests | None = None) -> None:
        """Create a hasher.

        Args:
            root: the git-ops repository root (the manifest's directory). Relative
                contexts are taken from here (default: the working directory), and
                imagectl's state (see `never_sent`) is never hashed.
            file_cache: content digests kept from earlier runs, used only for files
                whose stat is unchanged (`imagectl.filedigests`); None reads every file.
        """
        self.root = Path(os.path.abspath(root or Path.cwd()))
        self.file_cache = file_cache
        # (context, ignore rules) -> the entries, the stamps of the walk, its clock
        self._trees: dict[
            tuple[str, tuple[tuple[bool, str], ...]],
            tuple[tuple[ContextFile, ...], list[Stamp], int],
        ] = {}
        self._tree_digests: dict[tuple[str, tuple[tuple[bool, str], ...]], str] = {}
        self._files: dict[str, str] = {}
        self._rules: dict[str, IgnoreRules] = {}
        self._digests: dict[tuple[str, str, str], str] = {}
        self._mutex = threading.RLock()
        self.walks = 0

    def context_digest(
        self, context: Path, dockerfile: Path, builder: str = DEFAULT_BUILDER
    ) -> str:
        """The digest of a build context and its Dockerfile, ``sha256:<hex>``.

        Args:
            context: the build context directory (relative: from the root).
            dockerfile: the Dockerfile (relative: inside `context`). Its content
                always counts, even when it lies outside the context or is ignored.
            builder: ``docker`` or ``buildah``: whose ignore files select the files.

        Raises:
            ImagectlError: the context or Dockerfile cannot be read.
            ManifestError: the ignore file has a malformed pattern.
        """
        memo_key = (str(context), str(dockerfile), builder)
        known = self._digests.get(memo_key)
        if known is not None:  # images sharing a context and Dockerfile: one answer
            return known
        context_dir, dockerfile_path = self._paths(context, dockerfile)
        with self._mutex:
            tree = self._tree_digest(context_dir, dockerfile_path, builder)
            dockerfile_digest = self._dockerfile_digest(dockerfile_path)
        digest = hashlib.sha256(_CONTEXT_VERSION)
        digest.update(f"files\0{tree}\0dockerfile\0{dockerfile_digest}\n".encode())
        result = "sha256:" + digest.hexdigest()
        self._digests[memo_key] = result
        return result

    def context_files(
        self, context: Path, dockerfile: Path, builder: str = DEFAULT_BUILDER
    ) -> tuple[ContextFile, ...]:
        """The entries of a context that `builder` is given, sorted by path.

        Exactly the entries `context_digest` hashes (the Dockerfile apart).

        Raises:
            ImagectlError: the context cannot be read.
            ManifestError: the ignore file has a malformed pattern.
        """
        context_dir, dockerfile_path = self._paths(context, dockerfile)
        with self._mutex:
            return self._tree(
                context_dir, self._ignore_rules(context_dir, dockerfile_path, builder)
            )

    def ignore_rules(
        self, context: Path, dockerfile: Path, builder: str = DEFAULT_BUILDER
    ) -> IgnoreRules:
        """The ignore rules `builder` applies to this context (empty when it has none).

        Raises:
            ImagectlError: the context or the ignore file cannot be read.
            ManifestError: the ignore file has a malformed pattern.
        """
        context_dir, dockerfile_path = self._paths(context, dockerfile)
        with self._mutex:
            return self._ignore_rules(context_dir, dockerfile_path, builder)

    def _paths(self, context: Path, dockerfile: Path) -> tuple[str, str]:
        context_dir = os.path.join(self.root, context)  # an absolute context stays as is
        dockerfile_path = os.path.abspath(os.path.join(context_dir, dockerfile))
        context_dir = os.path.abspath(context_dir)
        if not os.path.isdir(context_dir):
            raise ImagectlError(f"build context {self._display(context_dir)} is not a directory")
        return context_dir, dockerfile_path

    def _tree_digest(self, context_dir: str, dockerfile_path: str, builder: str) -> str:
        """The digest of the entries `builder` is given: kept from an earlier run while
        the stamp of its walk holds (`FileDigests.tree`), else walked (and kept)."""
        stamp_key = f"{builder}\0{context_dir}\0{dockerfile_path}"
        if self.file_cache is not None:
            known = self.file_cache.tree(stamp_key)
            if known is not None:
                return known
        since = now_ns()  # before any stat of the stamp: see FileDigests.put_tree
        stamps: list[Stamp] = []
        if self.file_cache is not None:
            stamps.append(_stamp(os.path.dirname(dockerfile_path), True))  # its ignore file
        ignore_file = _ignore_file(builder, context_dir, dockerfile_path)
        rules = self._rules_of(ignore_file)
        if ignore_file is not None and self.file_cache is not None:
            stamps.append(_stamp(ignore_file, True))
        key = (context_dir, rules.key)
        tree = self._tree_digests.get(key)
        if tree is None:
            digest = hashlib.sha256()
            for entry in self._tree(context_dir, rules):
                digest.update(entry.record())
            tree = self._tree_digests[key] = digest.hexdigest()
        if self.file_cache is not None:
            files, walked, walk_since = self._trees[key]  # walked now, or earlier in this run
            stamps += walked
            hashed = [e.path for e in files if e.kind in "fx"]
            self.file_cache.put_tree(stamp_key, tree, stamps, hashed, min(since, walk_since))
        return tree

    def _tree(self, context_dir: str, rules: IgnoreRules) -> tuple[ContextFile, ...]:
        key = (context_dir, rules.key)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = self._walk(context_dir, rules)
        return tree[0]

    def _display(self, path: str) -> str:
        """`path` relative to the root when under it (as `Path.relative_to` gives it: the
        paths here are absolute and normalised), else as is; string work, no Path."""
        root = str(self.root)
        if path == root:
            return "."
        prefix = root.rstrip(os.sep) + os.sep
        return path[len(prefix) :] if path.startswith(prefix) else path

    def _ignore_rules(self, context: str, dockerfile: str, builder: str) -> IgnoreRules:
        return self._rules_of(_ignore_file(builder, context, dockerfile))

    def _rules_of(self, path: str | None) -> IgnoreRules:
        """The rules of the ignore file at `path` (None: no rules)."""
        if path is None:
            return IgnoreRules()
        cached = self._rules.get(path)
        if cached is None:
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
            except OSError as exc:
                raise ImagectlError(
                    f"{self._display(path)}: cannot read ignore file: {exc.strerror or exc}"
                ) from exc
            text = raw.decode("utf-8", "surrogateescape")
            cached = IgnoreRules.from_text(text, self._display(path))
            self._rules[path] = cached
        return cached

    def _file_digest(self, path: str, what: str = "file") -> str:
        cached = self._files.get(path)
        if cached is None:
            try:
                with open(path, "rb") as handle:
                    cached = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError as exc:
                raise ImagectlError(
                    f"cannot read {what} {self._display(path)}: {exc.strerror or exc}"
                ) from exc
            self._files[path] = cached
        return cached

    def dockerfile_digest(self, path: str) -> str:
        """The sha256 (hex) of a Dockerfile's content (absolute `path`): kept from an
        earlier run while its stat is unchanged, as `context_digest` takes it.

        Raises:
            ImagectlError: the Dockerfile cannot be read.
        """
        with self._mutex:
            return self._dockerfile_digest(path)

    def _dockerfile_digest(self, path: str) -> str:
        """The Dockerfile's content digest; kept from an earlier run, as a context file's
        is, while its stat is unchanged (one stat instead of reading it)."""
        if self.file_cache is None or path in self._files:
            return self._file_digest(path, "Dockerfile")
        since = now_ns()
        try:
            st = os.stat(path)
        except OSError:
            return self._file_digest(path, "Dockerfile")  # reports why it cannot be read
        if not stat.S_ISREG(st.st_mode):
            return self._file_digest(path, "Dockerfile")
        return self._content_digest(path, st, since, "Dockerfile")

    def _walk(
        self, context: str, rules: IgnoreRules
    ) -> tuple[tuple[ContextFile, ...], list[Stamp], int]:
        """The entries of `context` that `rules` keep, as BuildKit's walker sees them,
        (with a file cache) the stamps of the directories listed and of the entries that
        are neither files nor directories (see `FileDigests.put_tree`), and the clock
        taken before the walk's first stat."""
        self.walks += 1
        since = now_ns()  # before any stat: see FileDigests.put
        stamping = self.file_cache is not None
        stamps: list[Stamp] = []
        records: list[tuple[bytes, ContextFile]] = []
        pending: list[tuple[str, str, MatchInfo | None]] = [(context, "", None)]
        while pending:
            directory, prefix, parent_info = pending.pop()
            try:
                if stamping:  # before listing it: a change while listing is a miss later
                    stamps.append(_stamp(directory, directory == context))
                with os.scandir(directory) as listing:
                    entries = list(listing)
            except OSError as exc:
                raise ImagectlError(
                    f"cannot read build context directory {self._display(directory)}: "
                    f"{exc.strerror or exc}"
                ) from exc
            for entry in entries:
                if never_sent(entry.name):
                    continue
                rel = prefix + entry.name
                excluded, info = rules.match(rel, parent_info) if rules else (False, None)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not excluded or rules.descend(rel):
                            pending.append((entry.path, rel + "/", info))
                        continue
                    if excluded:
                        continue
                    info_stat = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    raise ImagectlError(
                        f"cannot stat {self._display(entry.path)}: {exc.strerror or exc}"
                    ) from exc
                found = self._entry(entry.path, rel, info_stat, since)
                if stamping and found.kind not in "fx":  # a file's stat is in the file cache
                    stamps.append((entry.path, False, stat_key(info_stat)))
                records.append((_fs_bytes(rel), found))
        records.sort(key=lambda pair: pair[0])
        return tuple(entry for _, entry in records), stamps, since

    def _entry(self, path: str, rel: str, st: os.stat_result, since: int) -> ContextFile:
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            # the link text, never its target: a link may point out of the context
            return ContextFile(rel, path, "l", os.readlink(path))
        if stat.S_ISREG(mode):
            kind = "x" if mode & stat.S_IXUSR else "f"
            return ContextFile(rel, path, kind, self._content_digest(path, st, since))
        return ContextFile(rel, path, "o", "")  # fifo, socket, device: present, never read

    def _content_digest(self, path: str, st: os.stat_result, since: int, what: str = "file") -> str:
        """A context file's digest: kept from an earlier run while its stat is unchanged."""
        known = self._files.get(path)
        if known is not None or self.file_cache is None:
            return known or self._file_digest(path, what)
        known = self.file_cache.get(path, st)
        if known is not None:
            self._files[path] = known
            return known
        known = self._file_digest(path, what)
        self.file_cache.put(path, st, known, since)
        return known


_ParamsKey = tuple[
    tuple[tuple[str, str], ...],
    str | None,
    tuple[str, ...],
    tuple[tuple[str, str], ...],
    tuple[str, ...],
    str | None,
]


def _params_key(image: ImageConfig, frontend: str | None) -> _ParamsKey:
    secrets = tuple(sorted(s.id for s in image.secrets))
    return (image.args, image.target, image.platforms, image.labels, secrets, frontend)


def _params(key: _ParamsKey) -> dict[str, object]:
    args, target, platforms, labels, secrets, frontend = key
    params: dict[str, object] = {
        "args": dict(args),
        "target": target,
        "platforms": list(platforms),
        "labels": dict(labels),
        "secrets": list(secrets),
    }
    if frontend is not None:
        params["frontend"] = frontend
    return params


@functools.lru_cache(maxsize=4096)  # a fleet's images share a few sets of parameters
def _params_text(key: _ParamsKey) -> str:
    return _PARAMS_JSON.encode(_params(key))


def image_params(image: ImageConfig, frontend: str | None = None) -> dict[str, object]:
    """The build parameters of an image as the inputs digest takes them.

    `frontend` (the pinned ``# syntax=`` frontend) is added only when there is one, so
    the digests of images without one stay what they were before frontends counted.
    """
    return _params(_params_key(image, frontend))


def image_inputs_digest(context_digest: str, image: ImageConfig, frontend: str | None) -> str:
    """`inputs_digest(context_digest, image_params(image, frontend))`, the same digest,
    with the parameters' JSON made once per distinct set of parameters."""
    return _inputs_digest(context_digest, _params_text(_params_key(image, frontend)))


@functools.lru_cache(maxsize=65536)  # images of a family share a context and parameters
def _inputs_digest(context_digest: str, params_text: str) -> str:
    # what _PARAMS_JSON writes for {"context": ..., "params": ...}: keys sorted, no spaces
    text = '{"context":' + _PARAMS_JSON.encode(context_digest) + ',"params":' + params_text + "}"
    digest = hashlib.sha256(_INPUTS_VERSION)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return "sha256:" + digest.hexdigest()


def inputs_digest(context_digest: str, params: Mapping[str, object]) -> str:
    """The inputs digest of one build, ``sha256:<hex>``.

    Args:
        context_digest: what `ContextHasher.context_digest` returned.
        params: the build parameters as JSON-able data (build args, target,
            platforms, labels, secret ids). Keys are sorted, so dict order does not
            matter; list order does. Secrets enter by id only: their values are
            never passed here, so rotating a secret does not rebuild and a secret
            can never be recovered from a digest.

    Raises:
        TypeError: `params` holds something JSON cannot represent.
    """
    text = _PARAMS_JSON.encode({"context": context_digest, "params": dict(params)})
    digest = hashlib.sha256(_INPUTS_VERSION)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return "sha256:" + digest.hexdigest()


__all__ = [
    "ContextFile",
    "ContextHasher",
    "dockerfile_names",
    "ignore_candidates",
    "image_inputs_digest",
    "image_params",
    "inputs_digest",
    "never_sent",
]
