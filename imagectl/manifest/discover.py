"""Find the root manifest as git finds its repository: from the current directory upwards.

Without `--file`, imagectl looks for `imagectl.yaml` in the current directory
and each parent up to and including the git root (the first directory holding
`.git`, a directory or a worktree's file). Outside any git repository only the
current directory is looked at: a stray `imagectl.yaml` in a parent that no
repository ties to this directory is never picked up. Not finding it is a
usage error (exit 2) that says where imagectl looked.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagectl.errors import UsageError

MANIFEST_NAME = "imagectl.yaml"


def git_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding `.git`, or None."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def search_dirs(cwd: Path) -> tuple[list[Path], Path | None]:
    """The directories looked at, nearest first, and the git root that ends the walk."""
    cwd = Path(os.path.abspath(cwd))
    root = git_root(cwd)
    if root is None:
        return [cwd], None
    dirs = [cwd]
    while dirs[-1] != root:
        dirs.append(dirs[-1].parent)
    return dirs, root


def find_manifest(given: Path | None, cwd: Path) -> Path:
    """The root manifest to load: `given` (from --file) if set, else the nearest one found.

    The result is relative to `cwd` when the manifest lies below it or in a parent
    (`imagectl.yaml`, `../imagectl.yaml`), so that messages stay short.

    Raises:
        UsageError: `given` is not a file, or no manifest was found; says where it looked.
    """
    if given is not None:
        if not (cwd / given).is_file():
            raise UsageError(f"manifest file not found: {given} (given by --file or IMAGECTL_FILE)")
        return given
    dirs, root = search_dirs(cwd)
    for directory in dirs:
        if (directory / MANIFEST_NAME).is_file():
            return Path(os.path.relpath(directory / MANIFEST_NAME, os.path.abspath(cwd)))
    if root is None:
        where = f"in {dirs[0]} (not inside a git repository, so no parent is searched)"
    elif len(dirs) == 1:
        where = f"in {dirs[0]} (the git root)"
    else:
        where = f"in {dirs[0]} or any parent up to the git root {root}"
    raise UsageError(f"no {MANIFEST_NAME} found {where}; pass --file PATH")
