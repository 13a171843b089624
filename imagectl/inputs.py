"""The inputs digest of an image build (DESIGN.md section 4, ``inputs-changed``).

An image's inputs are its build context as Docker would send it (``.dockerignore``
honoured), its Dockerfile, and its build parameters. The digest depends only on
relative paths, content, the owner-executable bit and symlink targets: never on
mtimes, owners, the checkout's location or the walk order, so the same tree on
another machine or in another clone gives the same digest.

Three things are never inputs, although Docker would send them when they lie in
the context: ``.git`` (at any depth), and imagectl's own state beside the manifest
(``imagectl.lock`` and ``.imagectl/``). Each of them changes on every apply, so
counting them would make an image whose context is the repository root rebuild
forever. Directories count only through the files below them (git does not keep
empty directories, so counting them would differ between checkouts).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from imagectl.dockerignore import IgnoreRules, MatchInfo
from imagectl.errors import ImagectlError

_CONTEXT_VERSION = b"imagectl-context-v1\n"
_INPUTS_VERSION = b"imagectl-inputs-v1\n"
_STATE_NAMES = ("imagectl.lock", ".imagectl")


def _fs_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class ContextHasher:
    """Hashes build contexts, each distinct (context, ignore rules) pair once.

    One hasher serves one plan: results are cached for its lifetime, so 2,000
    images sharing 100 contexts walk 100 trees. Safe to share between threads.

    Attributes:
        walks: how many context trees were actually walked (cache misses).
    """

    def __init__(self, root: Path | None = None) -> None:
        """Create a hasher.

        Args:
            root: the git-ops repository root (the manifest's directory). Relative
                contexts are taken from here (default: the working directory), and
                imagectl's state files here are never hashed.
        """
        self.root = Path(os.path.abspath(root or Path.cwd()))
        self._state_paths = frozenset(os.path.join(self.root, name) for name in _STATE_NAMES)
        self._trees: dict[tuple[str, tuple[tuple[bool, str], ...]], str] = {}
        self._files: dict[str, str] = {}
        self._rules: dict[str, IgnoreRules] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._mutex = threading.RLock()
        self.walks = 0

    def context_digest(self, context: Path, dockerfile: Path) -> str:
        """The digest of a build context and its Dockerfile, ``sha256:<hex>``.

        Args:
            context: the build context directory (relative: from the root).
            dockerfile: the Dockerfile (relative: inside `context`). Its content
                always counts, even when it lies outside the context or is ignored.

        Raises:
            ImagectlError: the context or Dockerfile cannot be read.
            ManifestError: the ignore file has a malformed pattern.
        """
        memo_key = (str(context), str(dockerfile))
        known = self._digests.get(memo_key)
        if known is not None:  # images sharing a context and Dockerfile: one answer
            return known
        context_dir = os.path.join(self.root, context)  # an absolute context stays as is
        dockerfile_path = os.path.abspath(os.path.join(context_dir, dockerfile))
        context_dir = os.path.abspath(context_dir)
        with self._mutex:
            if not os.path.isdir(context_dir):
                raise ImagectlError(
                    f"build context {self._display(context_dir)} is not a directory"
                )
            rules = self._ignore_rules(context_dir, dockerfile_path)
            key = (context_dir, rules.key)
            tree = self._trees.get(key)
            if tree is None:
                tree = self._walk(context_dir, rules)
                self._trees[key] = tree
            dockerfile_digest = self._file_digest(dockerfile_path, "Dockerfile")
        digest = hashlib.sha256(_CONTEXT_VERSION)
        digest.update(f"files\0{tree}\0dockerfile\0{dockerfile_digest}\n".encode())
        result = "sha256:" + digest.hexdigest()
        self._digests[memo_key] = result
        return result

    def _display(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path

    def _ignore_rules(self, context: str, dockerfile: str) -> IgnoreRules:
        # BuildKit: <Dockerfile>.dockerignore beside the Dockerfile, else <context>/.dockerignore
        path = dockerfile + ".dockerignore"
        if not os.path.isfile(path):
            path = os.path.join(context, ".dockerignore")
            if not os.path.isfile(path):
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

    def _walk(self, context: str, rules: IgnoreRules) -> str:
        """Hash the files of `context` that `rules` keep, as BuildKit's walker sees them."""
        self.walks += 1
        records: list[tuple[bytes, bytes]] = []
        pending: list[tuple[str, str, MatchInfo | None]] = [(context, "", None)]
        while pending:
            directory, prefix, parent_info = pending.pop()
            try:
                with os.scandir(directory) as listing:
                    entries = list(listing)
            except OSError as exc:
                raise ImagectlError(
                    f"cannot read build context directory {self._display(directory)}: "
                    f"{exc.strerror or exc}"
                ) from exc
            for entry in entries:
                if entry.name == ".git" or entry.path in self._state_paths:
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
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError as exc:
                    raise ImagectlError(
                        f"cannot stat {self._display(entry.path)}: {exc.strerror or exc}"
                    ) from exc
                records.append((_fs_bytes(rel), self._record(entry.path, rel, mode)))
        records.sort()
        digest = hashlib.sha256()
        for _, record in records:
            digest.update(record)
        return digest.hexdigest()

    def _record(self, path: str, rel: str, mode: int) -> bytes:
        if stat.S_ISLNK(mode):
            # the link text, never its target: a link may point out of the context
            kind, payload = b"l", _fs_bytes(os.readlink(path))
        elif stat.S_ISREG(mode):
            kind = b"x" if mode & stat.S_IXUSR else b"f"
            payload = self._file_digest(path).encode()
        else:  # fifo, socket, device: present, but never read
            kind, payload = b"o", b""
        return kind + b"\0" + _fs_bytes(rel) + b"\0" + payload + b"\n"


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
    text = json.dumps(
        {"context": context_digest, "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    digest = hashlib.sha256(_INPUTS_VERSION)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return "sha256:" + digest.hexdigest()


__all__ = ["ContextHasher", "inputs_digest"]
