"""Errors speak the user's words: every field of every manifest model, every wrong value.

Each choice (Literal or bool) field gets a value it does not accept and must name
that value as written and the accepted values; every field gets values of the
wrong type and no message may carry pydantic's phrasing.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from imagectl.errors import ManifestError, Problem
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.messages import annotation_at, choices_at, describe_error
from imagectl.manifest.models import (
    BaseSpec,
    FamilyModel,
    ImageModel,
    LintModel,
    RootFile,
    SecretModel,
    Settings,
    SignModel,
    VerifyModel,
)

PLACEHOLDER = "@@VALUE@@"
IMAGE = {"context": ".", "version": "1.4"}
# where each model lives in a minimal valid manifest, and that minimal manifest
HOMES: dict[type[BaseModel], tuple[tuple[str | int, ...], dict[str, Any]]] = {
    RootFile: ((), {}),
    Settings: (("defaults",), {}),
    FamilyModel: (("families", "f"), {}),
    ImageModel: (("families", "f", "images", "i"), dict(IMAGE)),
    BaseSpec: (("bases", "b"), {"ref": "registry.example:5000/debian:12"}),
    SecretModel: (("families", "f", "images", "i", "secrets", 0), {"id": "npm", "env": "X"}),
    LintModel: (("defaults", "lint"), {}),
    SignModel: (("defaults", "sign"), {"key_env": "SIGN_KEY"}),
    VerifyModel: (("bases", "b", "verify"), {"key": "vendor.pub"}),
}
PYDANTIC_WORDS = ("Input should", "valid dictionary", "instance of", "Value error", "input_value")


def reachable_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for name, field in model.model_fields.items():
        kind = annotation_at(model, (field.alias or name,))
        while typing.get_origin(kind) in (dict, list):
            kind = typing.get_args(kind)[-1]
        if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in found:
            found |= reachable_models(kind)
    return found


def fields_of(models: typing.Iterable[type[BaseModel]]) -> list[tuple[type[BaseModel], str]]:
    return sorted(
        ((m, f.alias or n) for m in models for n, f in m.model_fields.items()),
        key=lambda mf: (mf[0].__name__, mf[1]),
    )


ALL_FIELDS = fields_of(HOMES)
CHOICE_FIELDS = [
    (m, f)
    for m, f in ALL_FIELDS
    if choices_at(m, (f,)) or annotation_at(m, (f,)) is bool  # Literal or bool
]


def manifest_with(model: type[BaseModel], key: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A minimal valid manifest whose `model` has `key` set to the placeholder."""
    doc: dict[str, Any] = {
        "version": 1,
        "registry": "localhost:5000/acme",
        "families": {"f": {"from": "debian:12", "images": {"i": dict(IMAGE)}}},
    }
    path, minimal = HOMES[model]
    if path:
        parent: Any = doc
        for part in path[:-1]:
            parent = parent.setdefault(part, [] if part == "secrets" else {})
        if isinstance(parent, list):
            parent.append(dict(minimal))
        else:
            parent[path[-1]] = {**minimal, **parent.get(path[-1], {})}
        target: Any = doc
        for part in path:
            target = target[part]
    else:
        target = doc
    target[key] = PLACEHOLDER
    return doc, (*path, key)


def errors_for(tmp: Path, model: type[BaseModel], key: str, fragment: str) -> list[Problem]:
    doc, _ = manifest_with(model, key)
    text = json.dumps(doc).replace(json.dumps(PLACEHOLDER), fragment)  # JSON is YAML
    (tmp / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    root = tmp / "imagectl.yaml"
    root.write_text(text)
    try:
        load_manifest(root)
    except ManifestError as exc:
        return exc.problems
    return []


def test_the_table_covers_every_model() -> None:
    assert reachable_models(RootFile) <= set(HOMES)
    assert {f for _, f in CHOICE_FIELDS} >= {"bump", "builder", "network", "version"}


@pytest.mark.parametrize(("model", "key"), CHOICE_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_choice_errors_name_the_value_and_the_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[BaseModel], key: str
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    choices = choices_at(model, (key,)) or ["true", "false"]
    _, loc = manifest_with(model, key)
    for fragment, shown in (("sideways", "'sideways'"), ("1.10", "1.10"), ('"it\'s"', '"it\'s"')):
        problems = errors_for(tmp_path, model, key, fragment)
        assert [p.key_path for p in problems] == [".".join(str(p) for p in loc)]
        expected = (
            f"must be {choices[0]}, not {shown}"
            if len(choices) == 1
            else f"{shown} is not one of: {', '.join(choices)}"
        )
        assert problems[0].message == expected


WRONG = ["sideways", "1.10", "3", "true", "~", "[1, 2]", "{a: 1}", "[{a: 1}]", '"x\'y"']


@pytest.mark.parametrize(("model", "key"), ALL_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_no_pydantic_phrasing_for_any_wrong_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[BaseModel], key: str
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    for fragment in WRONG:
        for problem in errors_for(tmp_path, model, key, fragment):
            text = str(problem)
            assert not any(word in text for word in PYDANTIC_WORDS), text
            if problem.key_path.endswith(key) and fragment in ("1.10", "sideways"):
                assert fragment in text, text  # the value as written, not 1.1


def test_unquoted_version_hint_quotes_what_was_written(tmp_path: Path) -> None:
    problems = errors_for(tmp_path, ImageModel, "version", "1.10")
    col = (tmp_path / "imagectl.yaml").read_text().index("1.10") + 1
    assert [str(p) for p in problems] == [
        f"imagectl.yaml:1:{col}: families.f.images.i.version: expected a string, got the number "
        '1.10 (quote it: "1.10"; unquoted, 1.10 reads as the number 1.1)'
    ]


def test_empty_manifest_says_it_is_empty(tmp_path: Path) -> None:
    for text in ("", "# nothing yet\n", "---\n"):
        (tmp_path / "imagectl.yaml").write_text(text)
        with pytest.raises(ManifestError) as info:
            load_manifest(tmp_path / "imagectl.yaml")
        assert [p.message for p in info.value.problems] == ["the manifest is empty"]


def test_an_unknown_error_kind_is_still_in_plain_words() -> None:
    error = {"type": "uuid_type", "loc": ("registry",), "msg": "Input should be a UUID", "input": 3}
    assert describe_error(RootFile, error, "3") == ("3 is not valid here", "")


def test_a_quoted_schema_version_is_told_to_drop_the_quotes(tmp_path: Path) -> None:
    (version,) = errors_for(tmp_path, RootFile, "version", '"1"')
    assert (version.message, version.hint) == ("must be 1, not '1'", "write it without quotes")
