"""Staged build contexts hold exactly the entries of the inputs digest, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from imagectl.errors import BuildError
from imagectl.inputs import ContextHasher
from imagectl.staging import staged_context


def tree(root: Path) -> None:
    for rel, text in {
        "Dockerfile": "FROM scratch\nCOPY . /\n",
        "app/main.py": "print(1)\n",
        "app/data/table.csv": "a,b\n",
        "notes.log": "ignored\n",
        ".dockerignore": "*.log\n",
        "imagectl.lock": "format: 1\n",
        ".imagectl/logs/app.log": "a log\n",
        ".git/HEAD": "ref: refs/heads/main\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "app" / "data").chmod(0o750)
    (root / "empty").mkdir()
    os.symlink("../outside/secret", root / "link")


def listing(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() or not p.is_dir()
    }


def test_stage_holds_exactly_the_hashed_entries(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    tree(ctx)
    expected = {f.rel for f in ContextHasher(ctx).context_files(Path("."), Path("Dockerfile"))}
    assert expected == {
        ".dockerignore",
        "Dockerfile",
        "app/data/table.csv",
        "app/main.py",
        "link",
        "run.sh",
    }
    with staged_context(ctx, Path("Dockerfile"), "docker", tmp_path / "logs") as staged:
        assert staged.parent == tmp_path / "logs"
        assert listing(staged) == expected
        assert os.readlink(staged / "link") == "../outside/secret"
        assert os.stat(staged / "run.sh").st_mode & stat.S_IXUSR
        assert os.stat(staged / "app/main.py").st_ino == os.stat(ctx / "app/main.py").st_ino
        assert stat.S_IMODE(os.stat(staged / "app/data").st_mode) == 0o750
        assert (staged / "app").stat().st_mtime == (ctx / "app").stat().st_mtime
        staged_hash = ContextHasher(staged).context_digest(Path("."), ctx / "Dockerfile")
        assert staged_hash == ContextHasher(ctx).context_digest(Path("."), Path("Dockerfile"))
    assert not staged.exists()


def test_buildah_stage_follows_containerignore(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    tree(ctx)
    (ctx / ".containerignore").write_text("app\n")
    with staged_context(ctx, Path("Dockerfile"), "buildah", tmp_path) as staged:
        assert not (staged / "app").exists() and (staged / "notes.log").exists()
    with staged_context(ctx, Path("Dockerfile"), "docker", tmp_path) as staged:
        assert (staged / "app").exists() and not (staged / "notes.log").exists()


def test_files_are_copied_when_they_cannot_be_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tmp_path / "ctx"
    tree(ctx)

    def cross_device(src: str, dst: str) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    with staged_context(ctx, Path("Dockerfile"), "docker") as staged:
        copy = staged / "app" / "main.py"
        assert copy.read_text() == "print(1)\n"
        assert copy.stat().st_ino != (ctx / "app" / "main.py").stat().st_ino
        assert copy.stat().st_mtime == (ctx / "app" / "main.py").stat().st_mtime


def test_a_bad_ignore_file_is_a_build_error(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    tree(ctx)
    (ctx / ".dockerignore").write_text("[\n")
    staging = staged_context(ctx, Path("Dockerfile"), "docker")
    with pytest.raises(BuildError, match=r"cannot stage build context .*\.dockerignore:1"):
        staging.__enter__()
