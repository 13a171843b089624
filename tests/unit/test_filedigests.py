"""The file digest cache between plans: used only for files whose stat is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import imagectl.inputs
from imagectl.errors import ImagectlError
from imagectl.filedigests import SETTLE_NS, FileDigests, cache_path
from imagectl.inputs import ContextHasher
from tests.unit.test_inputs import CHANGES, NO_CHANGES, digest, make_tree

APP = Path("images/app")
DOCKERFILE = Path("Dockerfile")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The tree, every mtime an hour back: any later write is seen in the mtime, even
    within the clock tick of the tree's creation (the tests fake the settling time)."""
    root = tmp_path / "repo"
    make_tree(root)
    past = int(os.stat(root).st_mtime) - 3600
    for path in [root, *root.rglob("*")]:
        os.utime(path, (past, past), follow_symlinks=False)
    return root


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The files the hashers read."""
    seen: list[str] = []
    real = hashlib.file_digest

    def counting(handle: BinaryIO, name: str) -> Any:
        seen.append(os.path.basename(handle.name))
        return real(handle, name)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    yield seen


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file looks older than the settling time (as on a checkout planned before)."""
    real = imagectl.inputs.now_ns
    monkeypatch.setattr(imagectl.inputs, "now_ns", lambda: real() + 2 * SETTLE_NS)


def cached_digest(root: Path) -> str:
    cache = FileDigests(root)
    result = ContextHasher(root, cache).context_digest(APP, DOCKERFILE)
    cache.save()
    return result


@pytest.mark.usefixtures("settled")
def test_a_warm_run_reads_no_unchanged_file_and_gives_the_same_digest(
    repo: Path, reads: list[str]
) -> None:
    first = cached_digest(repo)
    assert first == digest(repo)
    stored = json.loads(cache_path(repo).read_text())["files"]
    assert {os.path.basename(p) for p in stored} == {
        "Dockerfile",
        "main.py",
        "util.py",
        "run.sh",
        "README.md",
        ".dockerignore",
    }
    reads.clear()
    assert cached_digest(repo) == first
    assert reads == []
    (repo / APP / "src" / "main.py").write_text("print('yo')\n")  # same size, new content
    assert cached_digest(repo) == digest(repo) != first
    assert "main.py" in reads


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_change_is_seen_through_the_cache(repo: Path, name: str) -> None:
    before = cached_digest(repo)
    CHANGES[name](repo / APP)
    assert cached_digest(repo) == digest(repo) != before


def test_a_file_modified_within_the_settling_time_is_never_stored(
    repo: Path, reads: list[str]
) -> None:
    first = cached_digest(repo)
    assert not cache_path(repo).exists() or json.loads(cache_path(repo).read_text())["files"] == {}
    (repo / APP / "src" / "main.py").write_text("print('yo')\n")  # same size, same second
    reads.clear()
    assert cached_digest(repo) == digest(repo) != first
    assert "main.py" in reads


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"format": 1, "files": {"x": 1}}', '{"format": 99, "files": {}}']
)
def test_a_damaged_cache_is_ignored(repo: Path, text: str) -> None:
    cache_path(repo).parent.mkdir(parents=True)
    cache_path(repo).write_text(text)
    assert cached_digest(repo) == digest(repo)


@pytest.mark.usefixtures("settled")
def test_a_stored_digest_is_not_trusted_when_the_stat_differs(repo: Path) -> None:
    main = str(repo / APP / "src" / "main.py")
    cached_digest(repo)
    data = json.loads(cache_path(repo).read_text())
    del data["trees"]  # the files alone (a stored tree is checked in the tests below)
    data["files"][main][5] = "0" * 64  # a wrong digest under the current stat
    cache_path(repo).write_text(json.dumps(data))
    assert cached_digest(repo) != digest(repo)  # the stat key is all that is checked...
    data["files"][main][1] += 1  # ...so another mtime means the file is read again
    cache_path(repo).write_text(json.dumps(data))
    assert cached_digest(repo) == digest(repo)


@pytest.mark.usefixtures("settled")
def test_a_dockerfile_outside_the_context_is_cached_and_its_changes_seen(
    repo: Path, reads: list[str]
) -> None:
    """The Dockerfile counts even outside the context: kept by stat as a context file is."""
    outside = repo / "Dockerfile.app"
    outside.write_text("FROM scratch\n")

    def run() -> str:
        cache = FileDigests(repo)
        result = ContextHasher(repo, cache).context_digest(APP, Path("../../Dockerfile.app"))
        cache.save()
        return result

    first = run()
    assert str(outside) in json.loads(cache_path(repo).read_text())["files"]
    reads.clear()
    assert run() == first
    assert reads == []
    outside.write_text("FROM busybox\n")
    assert run() != first
    assert reads == ["Dockerfile.app"]


@pytest.mark.parametrize("how", ["a directory", "unreadable"])
def test_a_dockerfile_that_cannot_be_read_is_named_as_such(
    repo: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dockerfile = repo / "Dockerfile.app"  # outside the context: read only as the Dockerfile
    if how == "a directory":
        dockerfile.mkdir()
    else:  # the stat succeeds, the read fails (as for a file without read permission)
        dockerfile.write_text("FROM scratch\n")

        def refuse(handle: BinaryIO, name: str) -> Any:
            if handle.name.endswith("Dockerfile.app"):
                raise PermissionError(13, "Permission denied")
            return hashlib.new(name, handle.read())

        monkeypatch.setattr(hashlib, "file_digest", refuse)
    hasher = ContextHasher(repo, FileDigests(repo))
    with pytest.raises(ImagectlError, match=r"cannot read Dockerfile Dockerfile\.app"):
        hasher.context_digest(APP, Path("../../Dockerfile.app"))


def hashed(root: Path, dockerfile: Path = DOCKERFILE) -> tuple[str, int]:
    """(the context digest through the cache, how many trees were walked)."""
    cache = FileDigests(root)
    hasher = ContextHasher(root, cache)
    result = hasher.context_digest(APP, dockerfile)
    cache.save()
    return result, hasher.walks


@pytest.mark.usefixtures("settled")
def test_a_warm_run_walks_no_unchanged_context(repo: Path, reads: list[str]) -> None:
    first, walks = hashed(repo)
    assert (first, walks) == (digest(repo), 1)
    stored = json.loads(cache_path(repo).read_text())
    assert list(stored["trees"]) == [f"docker\0{repo / APP}\0{repo / APP / DOCKERFILE}"]
    reads.clear()
    assert hashed(repo) == (first, 0)
    assert reads == []
    assert json.loads(cache_path(repo).read_text()) == stored  # the files still kept


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_change_misses_the_stored_tree(repo: Path, name: str) -> None:
    before, _ = hashed(repo)
    CHANGES[name](repo / APP)
    after, walks = hashed(repo)
    assert (after, walks) == (digest(repo), 1)
    assert after != before
    assert hashed(repo) == (after, 0)  # stored again


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("name", sorted(NO_CHANGES))
def test_what_changes_no_digest_may_still_walk_but_gives_the_same(repo: Path, name: str) -> None:
    before, _ = hashed(repo)
    NO_CHANGES[name](repo / APP)
    assert hashed(repo)[0] == before == digest(repo)


@pytest.mark.usefixtures("settled")
def test_an_ignore_file_beside_a_dockerfile_outside_the_context_is_seen(repo: Path) -> None:
    dockerfiles = repo / "dockerfiles"
    dockerfiles.mkdir()
    (dockerfiles / "app.Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    past = int(os.stat(repo).st_mtime)
    os.utime(dockerfiles, (past, past))
    outside = Path("../../dockerfiles/app.Dockerfile")
    before, _ = hashed(repo, outside)
    assert hashed(repo, outside) == (before, 0)
    (dockerfiles / "app.Dockerfile.dockerignore").write_text("README.md\n")
    after, walks = hashed(repo, outside)
    assert (after, walks) == (digest(repo, dockerfile=str(outside)), 1)
    assert after != before


def test_a_tree_whose_directories_changed_within_the_settling_time_is_not_stored(
    repo: Path,
) -> None:
    (repo / APP / "src" / "new.py").write_text("")  # the directory's mtime is now
    first, _ = hashed(repo)
    assert json.loads(cache_path(repo).read_text()).get("trees", {}) == {}
    assert hashed(repo) == (first, 1)


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize(
    "tree",
    [
        None,
        7,
        ["sha"],
        ["0" * 64, [["/nonexistent", True, 1, 2, 3, 4, 5]], []],
        ["0" * 64, [], ["/not/a/stored/file"]],
        [1, [], []],
    ],
)
def test_a_damaged_tree_is_a_walk(repo: Path, tree: Any) -> None:
    first, _ = hashed(repo)
    data = json.loads(cache_path(repo).read_text())
    (key,) = data["trees"]
    data["trees"][key] = tree
    cache_path(repo).write_text(json.dumps(data))
    assert hashed(repo) == (first, 1)


@pytest.mark.usefixtures("settled")
def test_a_stored_tree_is_trusted_only_under_its_stamp(repo: Path) -> None:
    first, _ = hashed(repo)
    data = json.loads(cache_path(repo).read_text())
    (key,) = data["trees"]
    data["trees"][key][0] = "0" * 64  # a wrong digest under the current stamp is believed...
    cache_path(repo).write_text(json.dumps(data))
    assert hashed(repo)[0] != first
    data["trees"][key][1][0][3] += 1  # ...another directory mtime is a walk
    cache_path(repo).write_text(json.dumps(data))
    assert hashed(repo) == (first, 1)
