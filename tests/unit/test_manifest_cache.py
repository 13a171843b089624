"""The resolved-manifest cache: used only while every fact behind it still holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagectl.errors import ManifestError
from imagectl.manifest import cache, loader
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import ImageConfig

ROOT = """\
version: 1
registry: localhost:5000/acme
include: ["families/*.yaml"]
bases:
  debian: {ref: "docker.io/library/debian:bookworm-slim"}
"""
FAMILY = """\
families:
  {name}:
    from: debian
    images:
      {name}:
        context: ../ctx
        version: "{version}"
        secrets: [{{id: tok, env: TOK}}]
        args: {{A: "1"}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "families").mkdir()
    (tmp_path / "families" / "a.yaml").write_text(FAMILY.format(name="a", version="1.0"))
    (tmp_path / "imagectl.yaml").write_text(ROOT)
    return tmp_path / "imagectl.yaml"


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(loader, "load_yaml", refuse)


def test_second_load_comes_from_the_cache_and_equals_a_fresh_load(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = load_manifest(repo)
    assert cache.cache_file(repo).is_file()
    no_parsing(monkeypatch)
    assert load_manifest(repo) == fresh


def test_an_edited_file_is_read_again(repo: Path) -> None:
    load_manifest(repo)
    (repo.parent / "families" / "a.yaml").write_text(FAMILY.format(name="a", version="2.0"))
    assert load_manifest(repo).images["a"].version == "2.0"


def test_a_new_file_matching_an_include_is_picked_up(repo: Path) -> None:
    load_manifest(repo)
    (repo.parent / "families" / "b.yaml").write_text(FAMILY.format(name="b", version="1.0"))
    assert sorted(load_manifest(repo).images) == ["a", "b"]


def test_a_removed_context_is_reported_not_served_from_the_cache(repo: Path) -> None:
    load_manifest(repo)
    (repo.parent / "ctx" / "Dockerfile").unlink()
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(repo)


def test_a_corrupt_cache_is_ignored(repo: Path) -> None:
    fresh = load_manifest(repo)
    cache.cache_file(repo).write_text("{not json")
    assert load_manifest(repo) == fresh


def test_bad_input_is_never_cached_and_the_cache_can_be_turned_off(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo.parent / "families" / "a.yaml").write_text("families: [oops]\n")
    with pytest.raises(ManifestError):
        load_manifest(repo)
    assert not (repo.parent / ".imagectl").exists()
    (repo.parent / "families" / "a.yaml").write_text(FAMILY.format(name="a", version="1.0"))
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    load_manifest(repo)
    assert not cache.cache_file(repo).exists()


@pytest.mark.parametrize("change", ["short", "long", "no such value", "a field less"])
def test_a_cached_image_row_of_another_shape_is_a_miss(repo: Path, change: str) -> None:
    """Cached rows become images without the dataclass's __init__: a row with fields
    missing or extra, or naming a value not stored, must never make an image, it makes
    the load a full one."""
    fresh = load_manifest(repo)
    path = cache.cache_file(repo)
    data = json.loads(path.read_text())
    row = data["images"]["a"]
    if change == "no such value":
        row[3] = len(data["values"][3])
    elif change == "a field less":
        data["values"].pop()
    data["images"]["a"] = {"short": row[:-1], "long": [*row, 0]}.get(change, row)
    path.write_text(json.dumps(data))
    assert cache.load(repo) is None
    assert load_manifest(repo) == fresh


def test_images_share_the_values_they_have_in_common(repo: Path) -> None:
    (repo.parent / "families" / "b.yaml").write_text(FAMILY.format(name="b", version="1.0"))
    fresh = load_manifest(repo)
    data = json.loads(cache.cache_file(repo).read_text())
    context = cache._FIELDS.index("context")
    assert data["values"][context] == [str(repo.parent / "ctx")]  # stored once
    assert data["images"]["a"][context] == data["images"]["b"][context] == 0
    cached = load_manifest(repo)
    assert cached == fresh
    assert cached.images["a"].context is cached.images["b"].context
    assert cached.images["a"].location != cached.images["b"].location


def test_an_image_from_the_cache_behaves_as_a_constructed_one(repo: Path) -> None:
    fresh = load_manifest(repo).images["a"]
    cached = load_manifest(repo).images["a"]
    assert cached == fresh and hash(cached) == hash(fresh)
    assert cached.repository == "localhost:5000/acme/a" == ImageConfig.repository.func(cached)
    with pytest.raises(AttributeError):
        cached.version = "9"  # type: ignore[misc]


def test_realpath_with_directories_resolved_once_is_realpath(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "file-link").symlink_to(tmp_path / "real" / "sub" / "Dockerfile")
    (tmp_path / "real" / "out").symlink_to("/etc")
    names = [
        "real/sub/Dockerfile",
        "link/sub/Dockerfile",
        "link/sub",
        "real/file-link",
        "link/out/passwd",
        "real/sub/../out",
        "real/missing/file",
        "link/./sub",
        "",
    ]
    memo: dict[str, str] = {}
    for _ in range(2):  # the second round answers from the memo
        for name in names:
            path = str(tmp_path / name)
            assert cache._realpath(path, memo) == os.path.realpath(path), name
    assert cache._realpath("relative/x", {}) == os.path.realpath("relative/x")
    for root in (tmp_path / "real", tmp_path / "real" / "sub", tmp_path / "re", Path("/")):
        real_root = os.path.realpath(root)
        for name in names:
            path = str(tmp_path / name)
            expected = Path(os.path.realpath(path)).is_relative_to(real_root)
            assert cache._inside(path, real_root, {}) == expected, (root, name)
    facts = cache._PathFacts(os.path.realpath(tmp_path / "real"))
    (tmp_path / "real" / "dir-link").symlink_to(tmp_path / "real" / "sub")
    (tmp_path / "real" / "dangling").symlink_to(tmp_path / "nowhere")
    for name in [*names, "real/dir-link", "real/dangling", "real/sub/Dockerfile/x"]:
        path = str(tmp_path / name)
        for _ in range(2):  # the second answer from the memo
            assert facts.is_dir(path) == os.path.isdir(path), name
            assert facts.is_file(path) == os.path.isfile(path), name
            assert facts.is_link(path) == os.path.islink(path), name
            expected = Path(os.path.realpath(path)).is_relative_to(facts.real_root)
            assert facts.inside(path) == expected, name
