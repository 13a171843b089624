"""`.dockerignore` semantics: moby/patternmatcher matching, BuildKit reading and walking."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.dockerignore import IgnoreRules, go_clean, load_ignore_rules
from imagectl.errors import ManifestError

# (ignore file text, path, is_dir, excluded?)
CASES: list[tuple[str, str, bool, bool]] = [
    # plain names; a matched directory takes everything below it
    ("node_modules", "node_modules", True, True),
    ("node_modules", "node_modules/x/y.js", False, True),
    ("node_modules", "src/node_modules/x", False, False),
    ("node_modules", "node_modules_old", True, False),
    # * and ? never cross a slash
    ("*.md", "README.md", False, True),
    ("*.md", "docs/guide.md", False, False),
    ("?.txt", "a.txt", False, True),
    ("?.txt", "ab.txt", False, False),
    ("docs/*", "docs/a/b.md", False, True),
    ("*", "any/thing/at/all", False, True),
    # ** spans any number of directories, also none
    ("**/*.md", "a.md", False, True),
    ("**/*.md", "docs/x/y.md", False, True),
    ("**/*.md", "a.mdx", False, False),
    ("**/node_modules", "src/deep/node_modules/x", False, True),
    ("**/foo", "foo", False, True),
    ("**/foo", "afoo", False, False),
    ("**foo", "a/xfoo", False, True),  # a leading ** without / is a suffix match
    ("a/**/b", "a/b", False, True),
    ("a/**/b", "a/x/y/b", False, True),
    ("a/**/b", "a/x/b/c", False, True),
    ("a/**/b", "a/xb", False, False),
    ("a/**", "a/x/y", False, True),
    ("a/**", "a", True, False),  # the contents, not the directory
    ("**", "whatever/deep", False, True),
    # classes and escapes
    ("[abc].txt", "b.txt", False, True),
    ("[abc].txt", "d.txt", False, False),
    ("[^abc].txt", "d.txt", False, True),
    ("[^abc].txt", "a.txt", False, False),
    ("[a-c]x", "bx", False, True),
    ("[a-c]x", "dx", False, False),
    ("\\*.txt", "*.txt", False, True),
    ("\\*.txt", "a.txt", False, False),
    ("file(1).txt", "file(1).txt", False, True),
    ("a.b", "axb", False, False),  # regex characters are literal
    # exceptions: last match wins
    ("*.md\n!README.md", "README.md", False, False),
    ("*.md\n!README.md", "CHANGES.md", False, True),
    ("!keep.txt\n*.txt", "keep.txt", False, True),
    ("*.md\n ! README.md ", "README.md", False, False),
    # an exception re-includes a file inside an excluded directory
    ("build\n!build/keep.txt", "build/keep.txt", False, False),
    ("build\n!build/keep.txt", "build/other.txt", False, True),
    ("build\n!build/keep.txt", "build", True, True),
    ("docs\n!docs/keep/**", "docs/keep/a/b.md", False, False),
    ("docs\n!docs/keep/**", "docs/other.md", False, True),
    ("*\n!src/*.py", "src/a.py", False, False),  # a wildcard exception: every dir is entered
    ("*\n!src/*.py", "src/a.txt", False, True),
    ("*\n!src", "src/a/b.txt", False, False),
    # BuildKit does not enter an excluded dir that no literal exception points into
    ("a/b\n!a", "a/b/c", False, True),
    # paths are cleaned: leading /, ./, trailing /, .., whitespace
    ("/secret.txt", "secret.txt", False, True),
    ("./secret.txt", "secret.txt", False, True),
    ("tmp/", "tmp/a", False, True),
    ("foo/../bar", "bar", False, True),
    ("  *.log  ", "x.log", False, True),
    ("*.log", "./x.log", False, True),
    ("*.log", "/x.log", False, True),
    # comments start in the first column only
    ("# comment\n\n*.log", "# comment", False, False),
    ("# comment\n\n*.log", "x.log", False, True),
    ("  # not a comment", "# not a comment", False, True),
    # CRLF and a byte-order mark
    ("\ufeff*.tmp\r\n!keep.tmp\r\n", "a.tmp", False, True),
    ("\ufeff*.tmp\r\n!keep.tmp\r\n", "keep.tmp", False, False),
    # nothing excludes the context root
    ("*", ".", True, False),
    ("", "anything", False, False),
]


@pytest.mark.parametrize(("text", "path", "is_dir", "expected"), CASES)
def test_pattern_table(text: str, path: str, is_dir: bool, expected: bool) -> None:
    assert IgnoreRules.from_text(text).excluded(path, is_dir) is expected


def test_patterns_are_cleaned_like_buildkit() -> None:
    rules = IgnoreRules.from_text("# c\n/a\n./b/\n! /c/d\n  e/../f  \n\n")
    assert rules.patterns == ["a", "b", "!c/d", "f"]


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [("", "."), ("a//b/./c/", "a/b/c"), ("/../a", "/a"), ("../a/..", ".."), ("//x", "/x")],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


@pytest.mark.parametrize(
    ("text", "line"),
    [("ok\n!", 2), ("[abc", 1), ("a\\", 1), ("x\n[]a]", 2), ("[z-a]", 1), ("[a-]", 1)],
)
def test_malformed_pattern_is_located(text: str, line: int) -> None:
    with pytest.raises(ManifestError) as info:
        IgnoreRules.from_text(text, "ctx/.dockerignore")
    assert str(info.value).startswith(f"ctx/.dockerignore:{line}: invalid ignore pattern")


def test_equal_rules_hash_equal() -> None:
    a = IgnoreRules.from_text("# one\n*.md\n")
    b = IgnoreRules.from_text("/*.md")
    assert a == b
    assert hash(a) == hash(b)
    assert a != IgnoreRules.from_text("*.txt")
    assert not IgnoreRules.from_text("# only a comment")


def test_walker_match_info_agrees_with_excluded() -> None:
    rules = IgnoreRules.from_text("docs\n!docs/keep\n**/*.tmp")
    top, info = rules.match("docs", None)
    assert top is True
    assert rules.descend("docs") is True
    assert rules.match("docs/keep", info)[0] is False
    assert rules.match("docs/drop", info)[0] is True
    assert rules.descend("other") is False  # no exception points below "other"
    assert IgnoreRules.from_text("docs").descend("docs") is False


def test_per_dockerfile_ignore_file_wins(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / ".dockerignore").write_text("*.md\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert load_ignore_rules(context, dockerfile).patterns == ["*.md"]

    (context / "Dockerfile.dockerignore").write_text("*.txt\n")
    rules = load_ignore_rules(context, dockerfile)
    assert rules.patterns == ["*.txt"]  # replaces, never merges
    assert rules.excluded("README.md", False) is False


def test_per_dockerfile_ignore_file_next_to_an_outside_dockerfile(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / ".dockerignore").write_text("*.md\n")
    other = tmp_path / "dockerfiles"
    other.mkdir()
    dockerfile = other / "api.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    (other / "api.Dockerfile.dockerignore").write_text("secrets/\n")
    assert load_ignore_rules(context, dockerfile).patterns == ["secrets"]


def test_no_ignore_file_means_nothing_is_excluded(tmp_path: Path) -> None:
    rules = load_ignore_rules(tmp_path, tmp_path / "Dockerfile")
    assert not rules
    assert rules.excluded("anything/at/all", False) is False
