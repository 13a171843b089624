"""Finding imagectl.yaml from the current directory up to the git root."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.errors import UsageError
from imagectl.manifest.discover import find_manifest, git_root


def tree(tmp: Path, *, git: str | None = "dir") -> tuple[Path, Path]:
    """repo/ (git root unless git is None) with repo/a/b; returns (repo, repo/a/b)."""
    repo = tmp / "repo"
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    if git == "dir":
        (repo / ".git").mkdir()
    elif git == "file":  # a worktree's .git is a file
        (repo / ".git").write_text("gitdir: /elsewhere\n")
    return repo, deep


@pytest.mark.parametrize("git", ["dir", "file"])
def test_found_in_a_parent_up_to_the_git_root(tmp_path: Path, git: str) -> None:
    repo, deep = tree(tmp_path, git=git)
    (repo / "imagectl.yaml").write_text("version: 1\n")
    assert git_root(deep) == repo
    assert find_manifest(None, deep) == Path("../../imagectl.yaml")
    assert find_manifest(None, repo) == Path("imagectl.yaml")


def test_the_nearest_one_wins(tmp_path: Path) -> None:
    repo, deep = tree(tmp_path)
    (repo / "imagectl.yaml").write_text("version: 1\n")
    (repo / "a" / "imagectl.yaml").write_text("version: 1\n")
    assert find_manifest(None, deep) == Path("../imagectl.yaml")


def test_the_walk_stops_at_the_git_root(tmp_path: Path) -> None:
    (tmp_path / "imagectl.yaml").write_text("version: 1\n")  # above the repository
    repo, deep = tree(tmp_path)
    with pytest.raises(UsageError) as info:
        find_manifest(None, deep)
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"no imagectl.yaml found in {deep} or any parent up to the git root {repo}; "
        "pass --file PATH"
    )


def test_outside_git_only_the_current_directory_is_searched(tmp_path: Path) -> None:
    repo, deep = tree(tmp_path, git=None)
    if git_root(deep) is not None:
        pytest.skip("the temporary directory is inside a git repository")
    (repo / "imagectl.yaml").write_text("version: 1\n")
    with pytest.raises(UsageError, match="not inside a git repository"):
        find_manifest(None, deep)
    assert find_manifest(None, repo) == Path("imagectl.yaml")


def test_a_given_file_is_used_as_given(tmp_path: Path) -> None:
    _, deep = tree(tmp_path)
    (deep / "other.yaml").write_text("version: 1\n")
    assert find_manifest(Path("other.yaml"), deep) == Path("other.yaml")
    with pytest.raises(UsageError, match=r"manifest file not found: missing.yaml \(given by"):
        find_manifest(Path("missing.yaml"), deep)
