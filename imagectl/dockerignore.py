""".dockerignore semantics, as moby/patternmatcher and BuildKit's fsutil walker apply them.

Reading (buildkit ``dockerignore.ReadAll``): a line whose first byte is ``#`` is a
comment (``  # x`` is a pattern); lines are whitespace-trimmed and blank ones
skipped; a leading ``!`` marks an exception; each pattern is cleaned like Go's
``filepath.Clean`` and a leading ``/`` dropped, so ``/a``, ``./a`` and ``a/`` are
all ``a``. A UTF-8 BOM on the first line is ignored.

Matching (``patternmatcher``): ``*`` and ``?`` never cross ``/``; ``**`` spans any
number of directories (also none); ``[...]`` classes follow Go's ``filepath.Match``
(``[^...]`` negates, ``[]`` and ``[a-]`` are errors); ``\\`` escapes. The last
matching pattern wins. A pattern that matches a directory excludes everything
below it, because each path's parent directories are matched too; an exception
can re-include a path inside an excluded directory. As in BuildKit, an excluded
directory is not even entered unless some exception could apply inside it: with
only literal exceptions that means one that names a path below that directory
(``!node_modules/keep``); a wildcard exception (``!*.md``) makes every excluded
directory be entered.

BuildKit prefers ``<Dockerfile name>.dockerignore`` next to the Dockerfile over
``<context>/.dockerignore``; the two are never merged.

Two deliberate departures, both in corners no real ignore file visits: inside a
``[...]`` class ``*`` and ``?`` are literal characters (moby's regular-expression
translation garbles them), and a ``^`` outside a class is literal (moby turns it
into an anchor that can never match).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagectl.errors import ImagectlError, Location, ManifestError, Problem

_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_REGEX_SPECIAL = frozenset(".+()|{}$")
_CLASS_SPECIAL = frozenset("\\]^-[")
# fsutil: an exception containing one of these may match anywhere below an excluded dir
_PATTERN_CHARS = frozenset("*[]?^\\")

MatchInfo = tuple[bool, ...]


class _BadPattern(Exception):
    pass


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash-separated path (``""`` -> ``"."``)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(segment)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _class_char(pattern: str, pos: int) -> tuple[str, int]:
    """Go's ``getEsc``: one (possibly escaped) character of a ``[...]`` class."""
    if pos >= len(pattern) or pattern[pos] in "-]":
        raise _BadPattern("bad character class")
    if pattern[pos] == "\\":
        pos += 1
        if pos >= len(pattern):
            raise _BadPattern("unterminated character class")
    char = pattern[pos]
    pos += 1
    if pos >= len(pattern):
        raise _BadPattern("unterminated character class")
    return char, pos


def _translate_class(pattern: str, pos: int) -> tuple[str, int]:
    """Translate the class starting after ``[`` at `pos`; return (regex, position after ``]``)."""
    negated = pos < len(pattern) and pattern[pos] == "^"
    if negated:
        pos += 1
    parts: list[str] = []
    while True:
        if pos < len(pattern) and pattern[pos] == "]" and parts:
            pos += 1
            break
        lo, pos = _class_char(pattern, pos)
        hi = lo
        if pattern[pos] == "-":
            hi, pos = _class_char(pattern, pos + 1)
        if lo > hi:
            raise _BadPattern(f"invalid character class range {lo}-{hi}")
        low = "\\" + lo if lo in _CLASS_SPECIAL else lo
        high = "\\" + hi if hi in _CLASS_SPECIAL else hi
        parts.append(low if lo == hi else f"{low}-{high}")
    return "[" + ("^" if negated else "") + "".join(parts) + "]", pos


def _compile(pattern: str) -> tuple[int, re.Pattern[str] | None]:
    """Port of ``patternmatcher.Pattern.compile`` (match kind and regular expression)."""
    out: list[str] = []
    kind = _EXACT
    pos, step, size = 0, 0, len(pattern)
    while pos < size:
        char = pattern[pos]
        pos += 1
        if char == "*":
            if pos < size and pattern[pos] == "*":
                pos += 1
                if pos < size and pattern[pos] == "/":
                    pos += 1  # "**/" is "**"
                if pos >= size:
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        out.append(".*")
                        kind = _REGEXP
                else:
                    out.append("(?:.*/)?")
                    kind = _REGEXP
                if step == 0:
                    kind = _SUFFIX
            else:
                out.append("[^/]*")
                kind = _REGEXP
        elif char == "?":
            out.append("[^/]")
            kind = _REGEXP
        elif char in _REGEX_SPECIAL:
            out.append("\\" + char)
        elif char == "\\":
            if pos >= size:
                raise _BadPattern("trailing backslash")
            out.append(re.escape(pattern[pos]))
            pos += 1
            kind = _REGEXP
        elif char == "[":
            translated, pos = _translate_class(pattern, pos)
            out.append(translated)
            kind = _REGEXP
        elif char == "]":
            out.append("\\]")
            kind = _REGEXP
        else:
            out.append(re.escape(char))
        step += 1
    if kind != _REGEXP:
        return kind, None
    return kind, re.compile("".join(out))


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    kind: int
    regex: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None

    def matches_or_parent(self, path: str) -> bool:
        if self.matches(path):
            return True
        cut = path.find("/")
        while cut != -1:
            if self.matches(path[:cut]):
                return True
            cut = path.find("/", cut + 1)
        return False


def _read_lines(text: str) -> list[tuple[int, str]]:
    """buildkit ``ReadAll``: (line number, normalised pattern) for each pattern line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        out.append((number, "!" + pattern if invert else pattern))
    return out


class IgnoreRules:
    """The parsed patterns of one ignore file; equal rules compare and hash equal."""

    def __init__(self, patterns: Sequence[_Pattern] = (), source: str = "") -> None:
        self._patterns = tuple(patterns)
        self.source = source
        self._key = tuple((p.exclusion, p.text) for p in self._patterns)
        self._has_exclusions = any(p.exclusion for p in self._patterns)
        self._only_prefix_exceptions = not any(
            p.exclusion and not _PATTERN_CHARS.isdisjoint(_without_trailing_glob(p.text))
            for p in self._patterns
        )
        self._exception_prefixes = tuple(
            _without_trailing_glob(p.text) + "/" for p in self._patterns if p.exclusion
        )

    @classmethod
    def from_text(cls, text: str, source: str = ".dockerignore") -> IgnoreRules:
        """Parse the text of a ``.dockerignore`` file.

        Args:
            text: the file's content.
            source: how to name the file in error messages.

        Raises:
            ManifestError: a pattern is malformed (a bare ``!``, an unclosed ``[``,
                a trailing ``\\``), located at its line; Docker refuses such a file too.
        """
        patterns: list[_Pattern] = []
        problems: list[Problem] = []
        for number, line in _read_lines(text):
            try:
                patterns.append(_parse_pattern(line))
            except _BadPattern as exc:
                problems.append(
                    Problem(
                        Location(source, number),
                        f"invalid ignore pattern {line!r}: {exc}",
                        hint="docker build refuses this file too",
                    )
                )
        if problems:
            raise ManifestError(problems)
        return cls(patterns, source)

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, exceptions prefixed with ``!``, in file order."""
        return [("!" if excl else "") + text for excl, text in self._key]

    @property
    def key(self) -> tuple[tuple[bool, str], ...]:
        """A hashable identity of the rules (for caches)."""
        return self._key

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IgnoreRules) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"IgnoreRules({self.patterns!r})"

    def match(self, path: str, parent: MatchInfo | None) -> tuple[bool, MatchInfo]:
        """Port of ``MatchesUsingParentResults`` for walkers.

        Args:
            path: a clean relative slash-separated path.
            parent: what this returned for the parent directory, or None at the top
                (then every parent directory is matched, as ``MatchesOrParentMatches``).

        Returns:
            (whether `path` is excluded, the info to pass for its children).
        """
        matched = False
        info = [False] * len(self._patterns)
        for index, pattern in enumerate(self._patterns):
            hit = parent[index] if parent else False
            if not hit:
                if pattern.exclusion != matched:
                    continue
                hit = pattern.matches_or_parent(path) if parent is None else pattern.matches(path)
            info[index] = hit
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def descend(self, rel_dir: str) -> bool:
        """Whether a walker must look inside `rel_dir` although it is excluded.

        BuildKit skips an excluded directory unless an exception could re-include
        something below it.
        """
        if not self._has_exclusions:
            return False
        if not self._only_prefix_exceptions:
            return True
        prefix = rel_dir + "/"
        return any(p.startswith(prefix) for p in self._exception_prefixes)

    def excluded(self, rel_path: str, is_dir: bool) -> bool:
        """Whether Docker leaves `rel_path` out of the build context.

        Args:
            rel_path: a path relative to the context root (``/`` separated; ``./``,
                a leading ``/`` and a trailing ``/`` are cleaned away).
            is_dir: whether the path is a directory. Docker's patterns treat files
                and directories alike (``dir/`` is cleaned to ``dir``), so this does
                not change the answer; an excluded directory may still contain
                re-included paths, which Docker sends with their parent directories.

        Returns:
            True when the path or one of its parent directories is excluded (and no
            later exception re-includes it).
        """
        del is_dir  # same answer for files and directories, as in Docker
        path = go_clean(rel_path).lstrip("/")
        if path in ("", ".") or not self._patterns:
            return False
        parts = path.split("/")
        info: MatchInfo | None = None
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            hit, info = self.match(parent, info if depth > 1 else None)
            if hit and not self.descend(parent):
                return True
        return self.match(path, info)[0]


def _without_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


def _parse_pattern(line: str) -> _Pattern:
    """Port of ``patternmatcher.New`` for one pattern."""
    text = go_clean(line.strip())
    exclusion = text[0] == "!"
    if exclusion:
        if len(text) == 1:
            raise _BadPattern('illegal exclusion pattern: "!"')
        text = text[1:]
    kind, regex = _compile(text)
    return _Pattern(text=text, exclusion=exclusion, kind=kind, regex=regex)


def ignore_file(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file BuildKit uses for this build, or None when there is none."""
    own = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if own.is_file():
        return own
    shared = context / ".dockerignore"
    return shared if shared.is_file() else None


def load_ignore_rules(context: Path, dockerfile: Path) -> IgnoreRules:
    """The ignore rules of a build: ``<Dockerfile>.dockerignore``, else ``<context>/.dockerignore``.

    Args:
        context: the build context directory.
        dockerfile: the Dockerfile's path.

    Raises:
        ManifestError: the ignore file has a malformed pattern.
        ImagectlError: the ignore file cannot be read.
    """
    path = ignore_file(context, dockerfile)
    if path is None:
        return IgnoreRules()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImagectlError(f"{path}: cannot read ignore file: {exc.strerror or exc}") from exc
    return IgnoreRules.from_text(raw.decode("utf-8", "surrogateescape"), str(path))


__all__ = ["IgnoreRules", "go_clean", "ignore_file", "load_ignore_rules"]
