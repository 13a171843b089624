"""Surgical digest write-back: only the digest characters change, every other byte stays."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from imagectl.bases import BaseStatus, commit_title_and_lines, plan_rewrites
from imagectl.errors import ManifestError
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.writer import find_ref_sites, rewrite_digests, write_atomic

OLD = {c: f"sha256:{c * 64}" for c in "abcdef"}
NEW = {c: f"sha256:{c * 8}{'0' * 56}" for c in "abcdef"}

TRICKY = f"""\
# yaml-language-server: $schema=../schemas/imagectl.schema.json
version: 1   # schema version
registry: "localhost:5000/acme"

bases:
  # plain, with a trailing comment naming the old digest {OLD["a"]}
  plain:
    ref: localhost:5000/upstream/debian:bookworm-slim@{OLD["a"]}  # pinned

  single:
    ref: 'localhost:5000/upstream/alpine:3.20@{OLD["b"]}'
  double:      {{ ref: "localhost:5000/upstream/ubuntu:24.04@{OLD["c"]}" }}


  folded:
    ref: >-
      localhost:5000/upstream/busybox:1.36@{OLD["d"]}
  followed:
    ref: localhost:5000/upstream/scratch:latest   # followed, never rewritten
  current:
    ref: "localhost:5000/upstream/current:1@{OLD["f"]}"
families:
  runtime:
    from: 'localhost:5000/upstream/literal:1@{OLD["e"]}'
    labels: {{com.acme.note: "localhost:5000/upstream/alpine:3.20@{OLD["b"]}"}}
    images:
      base: {{context: base, version: "1.4"}}
      tool:
        context: tool
        version: '2.0'
        from: 'localhost:5000/upstream/literal:1@{OLD["e"]}'
"""


def updates() -> dict[str, str]:
    return {
        f"localhost:5000/upstream/debian:bookworm-slim@{OLD['a']}": NEW["a"],
        f"localhost:5000/upstream/alpine:3.20@{OLD['b']}": NEW["b"],
        f"localhost:5000/upstream/ubuntu:24.04@{OLD['c']}": NEW["c"],
        f"localhost:5000/upstream/busybox:1.36@{OLD['d']}": NEW["d"],
        f"localhost:5000/upstream/literal:1@{OLD['e']}": NEW["e"],
        f"localhost:5000/upstream/current:1@{OLD['f']}": OLD["f"],
    }


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old line, new line) pairs of every replaced line; fails on insertions/deletions."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    pairs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        assert op == "replace" and i2 - i1 == j2 - j1, (op, a[i1:i2], b[j1:j2])
        pairs.extend(zip(a[i1:i2], b[j1:j2], strict=True))
    return pairs


def test_only_the_digest_characters_change_in_every_quoting_style() -> None:
    new, changes = rewrite_digests(TRICKY, updates())
    assert [c.site.path for c in changes] == [
        ("bases", "plain", "ref"),
        ("bases", "single", "ref"),
        ("bases", "double", "ref"),
        ("bases", "folded", "ref"),
        ("families", "runtime", "from"),
        ("families", "runtime", "images", "tool", "from"),
    ]
    pairs = changed_lines(TRICKY, new)
    assert len(pairs) == 6
    for old_line, new_line in pairs:
        digest = next(c for c in "abcde" if OLD[c] in old_line)
        assert new_line == old_line.replace(OLD[digest], NEW[digest])
    # the comment naming the old digest and the look-alike label are untouched
    assert f"old digest {OLD['a']}\n" in new
    assert f'com.acme.note: "localhost:5000/upstream/alpine:3.20@{OLD["b"]}"' in new
    # byte for byte: the result is the old text with the digests swapped where expected
    expected = TRICKY
    for change in sorted(changes, key=lambda c: c.site.start, reverse=True):
        s, e = change.site.start, change.site.end
        expected = (
            expected[:s]
            + expected[s:e].replace(change.old_digest, change.new_digest)
            + expected[e:]
        )
    assert new == expected


def test_nothing_matches_nothing_changes() -> None:
    new, changes = rewrite_digests(TRICKY, {"localhost:5000/other:1@" + OLD["a"]: NEW["a"]})
    assert (new, changes) == (TRICKY, [])


def test_crlf_and_a_byte_order_mark_survive() -> None:
    text = "\ufeff" + TRICKY.replace("\n", "\r\n")
    new, changes = rewrite_digests(text, updates())
    assert len(changes) == 6
    assert new.startswith("\ufeff") and "\r\n" in new and "\n" not in new.replace("\r\n", "")
    assert new == text.replace(OLD["a"] + "  # pinned", NEW["a"] + "  # pinned").replace(
        f"3.20@{OLD['b']}'", f"3.20@{NEW['b']}'"
    ).replace(OLD["c"], NEW["c"]).replace(OLD["d"], NEW["d"]).replace(OLD["e"], NEW["e"])


def test_sites_are_located_for_messages() -> None:
    sites = {s.path: s for s in find_ref_sites(TRICKY)}
    plain = sites[("bases", "plain", "ref")]
    assert (plain.line, plain.col) == (8, 10)
    assert TRICKY[plain.start : plain.end] == plain.value
    double = sites[("bases", "double", "ref")]
    assert TRICKY[double.start] == '"' and TRICKY[double.end - 1] == '"'


def test_an_alias_is_refused_rather_than_rewritten_elsewhere() -> None:
    ref = f"localhost:5000/upstream/debian:12@{OLD['a']}"
    text = (
        f"version: 1\nregistry: r\nfamilies:\n  f:\n    labels: {{x: &pin {ref}}}\n"
        "bases:\n  debian:\n    ref: *pin\n"
    )
    with pytest.raises(ManifestError) as info:
        rewrite_digests(text, {ref: NEW["a"]}, "imagectl.yaml")
    message = str(info.value)
    assert message.startswith("imagectl.yaml:") and "bases.debian.ref" in message
    assert "cannot rewrite the digest in place" in message


def test_an_escaped_digest_is_refused() -> None:
    ref = f"localhost:5000/upstream/debian:12@{OLD['a']}"
    written = ref.replace("sha256:a", "sha256:\\x61")
    text = f'bases:\n  debian:\n    ref: "{written}"\n'
    with pytest.raises(ManifestError, match="not written literally"):
        rewrite_digests(text, {ref: NEW["a"]})


def test_a_bad_new_digest_is_refused() -> None:
    ref = f"localhost:5000/upstream/debian:12@{OLD['a']}"
    with pytest.raises(ManifestError, match="invalid digest"):
        rewrite_digests(f"bases:\n  d:\n    ref: {ref}\n", {ref: "sha256:nothex"})


def test_write_atomic_keeps_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "imagectl.yaml"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    write_atomic(path, "new\r\nü\n")
    assert path.read_bytes() == "new\r\nü\n".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["imagectl.yaml"]


INCLUDED = f"""\
# families of the web team
bases:
  debian:   # pinned: updates arrive as commits
    ref: "localhost:5000/upstream/debian:bookworm-slim@{OLD["a"]}"

families:
  web:
    from: debian
    images:
      api: {{context: ../api, version: "1.0"}}
"""


def test_the_file_that_declares_the_base_is_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "imagectl.yaml"
    root.write_text('version: 1\nregistry: localhost:5000/acme\ninclude: ["families/*.yaml"]\n')
    (tmp_path / "families").mkdir()
    (tmp_path / "families" / "web.yaml").write_text(INCLUDED)
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    manifest = load_manifest(root)
    ref = manifest.bases["debian"].ref
    status = BaseStatus("debian", ref, "behind", OLD["a"], NEW["a"])
    rewrites = plan_rewrites(manifest, [status])
    assert list(rewrites) == [tmp_path / "families" / "web.yaml"]
    text, changes = rewrites[tmp_path / "families" / "web.yaml"]
    assert text == INCLUDED.replace(OLD["a"], NEW["a"])
    assert changes[0].site.line == 4
    write_atomic(tmp_path / "families" / "web.yaml", text)
    assert root.read_text().startswith("version: 1")
    reloaded = load_manifest(root)
    assert reloaded.bases["debian"].ref == ref.replace(OLD["a"], NEW["a"])
    title, lines = commit_title_and_lines([status])
    assert title == "imagectl: update pinned base debian"
    assert lines == ["debian sha256:aaaaaaaaaaaa -> sha256:aaaaaaaa0000"]


def test_a_rewritten_manifest_still_loads_with_the_new_pins(tmp_path: Path) -> None:
    for ctx in ("base", "tool"):
        (tmp_path / ctx).mkdir()
        (tmp_path / ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    root = tmp_path / "imagectl.yaml"
    root.write_text(TRICKY)
    manifest = load_manifest(root)
    statuses = [
        BaseStatus(name, base.ref, "behind", OLD["a"], updates()[base.ref])
        for name, base in manifest.bases.items()
        if base.ref in updates() and updates()[base.ref] not in base.ref
    ]
    assert len(statuses) == 5  # four under bases: and the literal from:
    ((path, (text, changes)),) = plan_rewrites(manifest, statuses).items()
    assert path == root and len(changes) == 6
    write_atomic(root, text)
    reloaded = load_manifest(root)
    assert reloaded.bases["plain"].ref.endswith(NEW["a"])
    assert reloaded.bases["folded"].ref.endswith(NEW["d"])
    assert reloaded.images["tool"].base.endswith(NEW["e"])
    assert reloaded.bases["current"].ref.endswith(OLD["f"])
