"""A Dockerfile parser that follows BuildKit's rules closely enough to lint by.

Pure: text in, `Dockerfile` out. Handles parser directives (`# escape=` too), comments,
continuations, heredocs (`RUN <<EOF`, `COPY <<-"EOF" /path`), flags, exec versus shell
form and `FROM … AS name` stages; instructions keep their first line. Problems docker
would refuse are collected in `Dockerfile.problems`, never raised.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from imagectl.errors import Location, Problem

KEYWORDS = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL"}
    | {"MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
_JSON_KEYWORDS = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
_DIRECTIVE_RE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*")
_FLAG_RE = re.compile(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(\"[^\"]*\"|'[^']*'|\S*))?(?:\s+|$)")
_HEREDOC_RE = re.compile(r"(\d*)<<(-?)([^<]+)")
_KEYWORD_RE = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class Heredoc:
    """A here-document attached to a RUN, COPY or ADD instruction."""

    name: str
    body: str
    strip_tabs: bool  # `<<-`: leading tabs removed from the body and the terminator
    quoted: bool  # `<<"EOF"` / `<<'EOF'`: no variable expansion in the body


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword (upper case), flags, arguments and where it starts."""

    keyword: str
    line: int
    end_line: int
    value: str
    flags: tuple[tuple[str, str | None], ...] = ()
    json_args: tuple[str, ...] | None = None
    heredocs: tuple[Heredoc, ...] = ()
    comments: tuple[str, ...] = ()  # the comment lines directly above, without '#'
    escape: str = "\\"

    @property
    def exec_form(self) -> bool:
        """True for the JSON form (`CMD ["a", "b"]`)."""
        return self.json_args is not None

    def flag(self, name: str) -> list[str]:
        """The values of every `--name=value` flag ("" for a bare `--name`)."""
        return [value or "" for key, value in self.flags if key == name]

    @property
    def script(self) -> str:
        """The text a shell would see: the command and every heredoc body."""
        head = " ".join(self.json_args) if self.json_args is not None else self.value
        return "\n".join([head, *(doc.body for doc in self.heredocs)])

    @property
    def words(self) -> list[str]:
        """The arguments split like a shell would, quotes removed."""
        if self.json_args is not None:
            return list(self.json_args)
        return split_words(self.value, self.escape)


@dataclass(frozen=True)
class Stage:
    """A build stage: its FROM instruction and the instructions that follow it."""

    index: int
    name: str | None  # lower case, as docker compares stage names
    base: str
    from_: Instruction
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile."""

    directives: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    global_args: tuple[Instruction, ...] = ()
    stages: tuple[Stage, ...] = ()
    problems: tuple[Problem, ...] = ()
    directive_lines: dict[str, int] = field(default_factory=dict)  # key -> 1-based line

    @property
    def instructions(self) -> list[Instruction]:
        """Every instruction in file order."""
        result = list(self.global_args)
        for stage in self.stages:
            result += [stage.from_, *stage.instructions]
        return result

    def stage(self, ref: str) -> Stage | None:
        """The stage named `ref` (case-insensitive) or numbered `ref`."""
        if ref.isdigit():
            return self.stages[int(ref)] if int(ref) < len(self.stages) else None
        return next((s for s in self.stages if s.name == ref.lower()), None)

    def final_stage(self, target: str | None = None) -> Stage | None:
        """The stage docker builds: the `target` stage, else the last one."""
        last = self.stages[-1] if self.stages else None
        return self.stage(target) if target is not None else last

    def parent(self, stage: Stage) -> Stage | None:
        """The earlier stage that `stage` is built FROM, if any."""
        found = self.stage(stage.base) if not stage.base.isdigit() else None
        return found if found is not None and found.index < stage.index else None

    def chain(self, stage: Stage) -> list[Stage]:
        """The stages whose filesystem `stage` builds on, root first, `stage` last."""
        result = [stage]
        while (parent := self.parent(result[0])) is not None:
            result.insert(0, parent)
        return result


@functools.cache
def _word_patterns(escape: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    e = re.escape(escape)
    double = rf'"(?:{e}.|[^"{e}])*"?'
    word = re.compile(rf"(?:{e}.?|{double}|'[^']*'?|[^\s\"'{e}])+", re.DOTALL)
    part = re.compile(rf"{e}(.?)|\"((?:{e}.|[^\"{e}])*)\"?|'([^']*)'?", re.DOTALL)
    return word, part


def split_words(text: str, escape: str = "\\", *, keep_quotes: bool = False) -> list[str]:
    """Split `text` into shell-like words; quotes are removed unless `keep_quotes`."""
    word_re, part_re = _word_patterns(escape)
    unescape = re.compile(rf"{re.escape(escape)}(.)", re.DOTALL)

    def unquote(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return unescape.sub(r"\1", match.group(2))
        return match.group(1) if match.group(1) is not None else match.group(3)

    words = [m.group(0) for m in word_re.finditer(text)]
    return words if keep_quotes else [part_re.sub(unquote, w) for w in words]


def _heredoc_markers(text: str) -> list[tuple[str, bool, bool]]:
    """(name, strip_tabs, quoted) for each `<<WORD` word of an instruction line."""
    markers = []
    for word in split_words(text, "\\", keep_quotes=True):
        match = _HEREDOC_RE.fullmatch(word)
        if match:
            name = "".join(split_words(match.group(3), "\\"))
            if name:
                markers.append((name, match.group(2) == "-", name != match.group(3)))
    return markers


def _continues(line: str, escape: str) -> tuple[str, bool]:
    trimmed = line.rstrip(" \t")
    return (trimmed[:-1], True) if trimmed.endswith(escape) else (line, False)


def parser_directives(lines: Iterable[str]) -> list[tuple[str, str, int]]:
    """The parser directives at the top of a Dockerfile: (key in lower case, value, line).

    As BuildKit reads them: ``# key=value`` lines for the known keys (``syntax``,
    ``escape``, ``check``) from the first line on; any other line ends them.
    """
    found: list[tuple[str, str, int]] = []
    for number, line in enumerate(lines, start=1):
        match = _DIRECTIVE_RE.fullmatch(line.rstrip("\r").removeprefix("\ufeff"))
        if not match or match.group(1).lower() not in ("syntax", "escape", "check"):
            break  # anything else (an unknown directive too) ends the directives
        found.append((match.group(1).lower(), match.group(2), number))
    return found


class _Parser:
    def __init__(self, text: str, name: str) -> None:
        self.name = name
        self.lines = [line.rstrip("\r") for line in text.removeprefix("\ufeff").split("\n")]
        self.index = 0
        self.directives: dict[str, str] = {}
        self.directive_lines: dict[str, int] = {}
        self.escape = "\\"
        self.problems: list[Problem] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(Location(self.name, line), message))

    def read_directives(self) -> None:
        for key, value, line in parser_directives(self.lines):
            if key in self.directives:
                self.problem(line, f"parser directive {key!r} repeated")
            self.directives[key] = value
            self.directive_lines.setdefault(key, line)
            self.index = line
        escape = self.directives.get("escape", "\\")
        if escape in ("\\", "`"):
            self.escape = escape
        else:
            self.problem(1, f"invalid escape character {escape!r}: use \\ or `")

    def logical_line(self) -> str:
        text, more = _continues(self.lines[self.index].lstrip(), self.escape)
        self.index += 1
        while more and self.index < len(self.lines):
            raw = self.lines[self.index]
            self.index += 1
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue  # BuildKit skips comments and empty lines inside a continuation
            part, more = _continues(raw, self.escape)
            text += part
        return text

    def heredoc(self, name: str, strip_tabs: bool, quoted: bool, start: int) -> Heredoc:
        body: list[str] = []
        while self.index < len(self.lines):
            line = self.lines[self.index]
            self.index += 1
            candidate = line.lstrip("\t") if strip_tabs else line
            if candidate == name:
                break
            body.append(candidate)
        else:
            self.problem(start, f"heredoc <<{name} is never terminated")
        return Heredoc(name, "\n".join(body), strip_tabs, quoted)

    def instruction(self, comments: list[str]) -> Instruction | None:
        start = self.index + 1
        text = self.logical_line()
        head = _KEYWORD_RE.match(text.strip())
        assert head is not None  # the line is not blank
        keyword, rest = head.group(1).upper(), head.group(2).strip()
        if keyword not in KEYWORDS:
            self.problem(start, f"unknown instruction {keyword!r}")
            return None
        flags: list[tuple[str, str | None]] = []
        while match := _FLAG_RE.match(rest):
            value = match.group(2)
            flags.append((match.group(1).lower(), value.strip("\"'") if value else value))
            rest = rest[match.end() :]
        json_args = None
        if keyword in _JSON_KEYWORDS and rest.startswith("["):
            try:
                parsed = json.loads(rest)
            except ValueError:
                parsed = None  # docker falls back to the shell form
            if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
                json_args = tuple(parsed)
        heredocs: list[Heredoc] = []
        if keyword in ("RUN", "COPY", "ADD") and json_args is None:
            for name, strip_tabs, quoted in _heredoc_markers(rest):
                heredocs.append(self.heredoc(name, strip_tabs, quoted, start))
        return Instruction(
            keyword, start, self.index, rest, tuple(flags), json_args, tuple(heredocs),
            tuple(comments), self.escape,
        )  # fmt: skip

    def parse(self) -> Dockerfile:
        self.read_directives()
        global_args: list[Instruction] = []
        stages: list[Stage] = []
        comments: list[str] = []
        while self.index < len(self.lines):
            stripped = self.lines[self.index].strip()
            if not stripped or stripped.startswith("#"):
                comments = [*comments, stripped[1:].strip()] if stripped else []
                self.index += 1
                continue
            found, comments = self.instruction(comments), []
            if found is None:
                continue
            if found.keyword == "FROM":
                stages.append(self.stage(len(stages), found))
            elif stages:
                last = stages[-1]
                stages[-1] = replace(last, instructions=(*last.instructions, found))
            elif found.keyword == "ARG":
                global_args.append(found)
            else:
                self.problem(found.line, f"{found.keyword} before the first FROM")
        if not stages:
            self.problem(1, "no FROM instruction")
        problems = tuple(sorted(self.problems, key=lambda p: p.location))
        return Dockerfile(
            self.directives,
            self.escape,
            tuple(global_args),
            tuple(stages),
            problems,
            self.directive_lines,
        )

    def stage(self, index: int, from_: Instruction) -> Stage:
        words = from_.words
        name = words[2].lower() if len(words) == 3 and words[1].lower() == "as" else None
        if len(words) != 1 and name is None:
            self.problem(from_.line, "FROM takes an image and an optional `AS name`")
        return Stage(index, name, words[0] if words else "", from_, ())


def parse_dockerfile(text: str, name: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile.

    Args:
        text: the Dockerfile's content.
        name: the file name its problems are located in.

    Returns:
        The directives, the global ARGs before the first FROM, the stages and
        every problem docker would refuse (unknown instruction, unterminated heredoc…).
    """
    return _Parser(text, name).parse()
