"""Every style of YAML that ruamel's round-trip loader reads loads to the same manifest.

A property test draws random valid manifests, renders each one in block style,
flow style and mixtures of both (plain scalars with ports and colons, line ends
CRLF or LF, with or without a byte order mark), and expects the very model that
the data validates to, and the very data that the round-trip loader reads.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from imagectl.manifest import yamlsource
from imagectl.manifest.models import RootFile
from imagectl.manifest.yamlsource import YamlSourceError, load_yaml

# ------------------------------------------------------------------ the manifests drawn

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
HOSTS = st.sampled_from(
    ["localhost:5000", "registry.example:5000", "127.0.0.1:5000", "ghcr.io", "r.example"]
)
TAGS = st.sampled_from(["12", "bookworm-slim", "3.12.7", "1.10", "latest-2"])
FREE_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + " :#/.,-_@'\"[]{}&*!|>%é",
    max_size=20,
)
VERSIONS = st.sampled_from(["1", "1.4", "1.10", "2.0.3", "0.1"])


@st.composite
def references(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(NAMES, min_size=1, max_size=3)))
    return f"{draw(HOSTS)}/{path}:{draw(TAGS)}"


def settings_of(draw: st.DrawFn) -> dict[str, Any]:
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "registry": st.builds(lambda h, n: f"{h}/{n}", HOSTS, NAMES),
        "tags": st.lists(st.sampled_from(["{version}", "{major}.{minor}", "v{version}"])),
        "bump": st.sampled_from(["patch", "revision"]),
        "rebuild": st.sampled_from(["weekly", "daily", "0 4 * * 1", "never"]),
        "builder": st.sampled_from(["docker", "buildah"]),
        "platforms": st.lists(st.sampled_from(["linux/amd64", "linux/arm64/v8"]), max_size=2),
        "network": st.sampled_from(["default", "host", "none"]),
        "args": st.dictionaries(st.from_regex(r"[A-Z][A-Z_]{0,5}", fullmatch=True), FREE_TEXT),
        "labels": st.dictionaries(
            st.sampled_from(["org.opencontainers.image.title", "team", "a:b"]), FREE_TEXT
        ),
        "allow_latest": st.booleans(),
        "lint": st.fixed_dictionaries({"ignore": st.lists(st.sampled_from(["DL3002", "IC101"]))}),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(candidates)), unique=True, max_size=5))
    return {key: draw(candidates[key]) for key in chosen}


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"version": 1, "registry": f"{draw(HOSTS)}/{draw(NAMES)}"}
    bases = draw(st.dictionaries(NAMES, references().map(lambda r: {"ref": r}), max_size=3))
    if bases:
        data["bases"] = bases
    defaults = settings_of(draw)
    if defaults:
        data["defaults"] = defaults
    families: dict[str, Any] = {}
    for family in draw(st.lists(NAMES, unique=True, max_size=3)):
        body = settings_of(draw)
        body["images"] = {}
        for image in draw(st.lists(NAMES, unique=True, max_size=3)):
            spec = {"context": draw(st.sampled_from([".", "apps/web", "ctx:1"]))}
            spec["version"] = draw(VERSIONS)
            if draw(st.booleans()):
                spec["from"] = draw(st.one_of(references(), NAMES))
            if draw(st.booleans()):
                spec["secrets"] = [{"id": "npm", "env": "NPM_TOKEN"}]
            body["images"][image] = {**settings_of(draw), **spec}
        families[family] = body
    if families:
        data["families"] = families
    return data


# ---------------------------------------------------------------------- the renderers

_RESOLVER = YAML(typ="safe", pure=True)
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9./_@-]*(?::[A-Za-z0-9./_@-]+)*")


def scalar(value: Any) -> str:
    """A scalar as YAML: plain when it reads back as the same value, else double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and _RESOLVER.load(f"k: {text}") == {"k": text}:
        return text  # e.g. registry.example:5000/debian:12, plain, colons and all
    return json.dumps(text, ensure_ascii=False)


class Anchored(dict[str, Any]):
    """A mapping rendered with an anchor (`&name`)."""

    def __init__(self, name: str, value: dict[str, Any]) -> None:
        super().__init__(value)
        self.name = name


@dataclass(frozen=True)
class Alias:
    """An alias (`*name`) of an anchored mapping."""

    name: str


def key(value: Any) -> str:
    return "<<" if value == "<<" else scalar(value)  # a merge key is plain, never quoted


def flow(value: Any) -> str:
    if isinstance(value, Alias):
        return f"*{value.name}"
    if isinstance(value, dict):
        anchor = f"&{value.name} " if isinstance(value, Anchored) else ""
        return anchor + "{" + ", ".join(f"{key(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def block(value: Any, indent: int, flow_depth: int, depth: int = 0) -> list[str]:
    """Block style down to `flow_depth`, flow style below it."""
    pad = " " * indent
    lines: list[str] = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for name, item in items:
        head = f"{pad}{key(name)}:" if name is not None else f"{pad}-"
        nested = isinstance(item, dict | list) and item and depth + 1 < flow_depth
        if nested:
            lines.append(f"{head} &{item.name}" if isinstance(item, Anchored) else head)
            lines.extend(block(item, indent + 2, flow_depth, depth + 1))
        else:
            lines.append(f"{head} {flow(item)}")
    return lines


def with_merge_keys(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`data` to render with `defaults` anchored and merged (`<<: *d`) into each family,
    and the data that must load from it."""
    defaults = data.get("defaults", {})
    families = data.get("families", {})
    rest = {k: v for k, v in data.items() if k not in ("defaults", "families")}
    shown = {**rest, "defaults": Anchored("d", defaults)}  # the anchor before its aliases
    shown["families"] = {f: {"<<": Alias("d"), **body} for f, body in families.items()}
    loaded = {**rest, "defaults": defaults}
    loaded["families"] = {f: {**defaults, **body} for f, body in families.items()}
    return shown, loaded


def render(data: dict[str, Any], flow_depth: int) -> str:
    if flow_depth == 0:
        return flow(data) + "\n"
    return "\n".join(block(data, 0, flow_depth)) + "\n"


def plain(value: Any) -> Any:
    """Round-trip loader data as plain Python (CommentedMap, ScalarFloat, ... unwrapped)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def load_text(tmp: Path, text: str, *, crlf: bool = False, bom: bool = False) -> Any:
    raw = text.replace("\n", "\r\n") if crlf else text
    path = tmp / "imagectl.yaml"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + raw.encode("utf-8"))
    return load_yaml(path, "imagectl.yaml").data


# ----------------------------------------------------------------------------- tests


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=manifests(),
    flow_depth=st.integers(min_value=0, max_value=6),
    crlf=st.booleans(),
    bom=st.booleans(),
    merge=st.booleans(),
    directive=st.booleans(),
)
def test_every_style_loads_the_same_model(
    tmp_path: Path,
    data: dict[str, Any],
    flow_depth: int,
    crlf: bool,
    bom: bool,
    merge: bool,
    directive: bool,
) -> None:
    shown = data
    if merge:  # anchors, aliases and merge keys: the families inherit by `<<: *d`
        shown, data = with_merge_keys(data)
    expected = RootFile.model_validate(data)
    text = ("%YAML 1.2\n---\n" if directive else "") + render(shown, flow_depth)
    loaded = load_text(tmp_path, text, crlf=crlf, bom=bom)
    assert loaded == data, text
    assert RootFile.model_validate(loaded) == expected
    assert plain(YAML(typ="rt").load(text)) == loaded  # what the round-trip loader reads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the example: ports and colons in plain scalars in flow style
            "bases: {debian: {ref: registry.example:5000/debian:12}}\n",
            {"bases": {"debian": {"ref": "registry.example:5000/debian:12"}}},
        ),
        ("tags: [a:1, 'b', c]\n", {"tags": ["a:1", "b", "c"]}),
        (
            "x: &common {network: host, bump: patch}\ny:\n  <<: *common\n  bump: revision\n",
            {
                "x": {"network": "host", "bump": "patch"},
                "y": {"network": "host", "bump": "revision"},
            },
        ),
        ("%YAML 1.2\n---\na: [b:c]\n", {"a": ["b:c"]}),
        ("%YAML 1.1\n---\na: yes\nb: 010\n", {"a": True, "b": 8}),  # libyaml ignores 1.1
    ],
)
def test_documents_libyaml_refuses_or_misreads_load_as_round_trip(
    tmp_path: Path, text: str, expected: dict[str, Any]
) -> None:
    for crlf in (False, True):
        for bom in (False, True):
            assert load_text(tmp_path, text, crlf=crlf, bom=bom) == expected
    assert plain(YAML(typ="rt").load(text)) == expected


def test_positions_are_kept_in_flow_style_with_crlf_and_bom(tmp_path: Path) -> None:
    text = "a: 1\nbases: {debian: {ref: registry.example:5000/debian:12}, x: [1.10, b:c]}\n"
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    source = load_yaml(path, "m.yaml")
    assert str(source.location(("bases", "debian", "ref"))) == "m.yaml:2:23"
    assert str(source.location(("bases", "x", 0))) == "m.yaml:2:61"
    assert source.written(("bases", "x", 0)) == "1.10"  # as written, not 1.1
    assert source.written(("a",)) == "1"


def test_a_syntax_error_is_still_located(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\nb: {c: d:e, [\n")
    with pytest.raises(YamlSourceError) as info:
        load_yaml(path, "m.yaml")
    assert str(info.value).startswith("m.yaml:3:1: YAML syntax error:")


def test_the_c_parser_reads_what_it_can_and_pure_python_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    real = yamlsource._parse

    def spy(text: str, *, pure: bool) -> Any:
        calls.append(pure)
        return real(text, pure=pure)

    monkeypatch.setattr(yamlsource, "_parse", spy)
    load_text(tmp_path, "bases:\n  debian:\n    ref: registry.example:5000/debian:12\n")
    assert calls == [False]  # block style: libyaml reads it, once
    calls.clear()
    load_text(tmp_path, "bases: {debian: {ref: registry.example:5000/debian:12}}\n")
    assert calls == [False, True]  # libyaml refuses; the pure parser reads it


def test_merge_keys_locate_own_keys_at_their_own_line(tmp_path: Path) -> None:
    text = (
        "defaults: &d\n"
        "  network: host\n"
        "  bump: patch\n"
        "families:\n"
        "  a:\n"
        "    <<: *d\n"
        "    network: none\n"
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    source = load_yaml(path, "m.yaml")
    assert source.data["families"]["a"] == {"network": "none", "bump": "patch"}
    assert str(source.location(("families", "a", "network"))) == "m.yaml:7:14"  # its own
    assert str(source.location(("families", "a", "bump"))) == "m.yaml:3:9"  # the anchor's
