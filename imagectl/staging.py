"""Stage a build context: the builder is sent exactly the files the inputs digest covers.

A builder given a directory sends what its own ignore rules leave: imagectl's state
(``.imagectl/``, ``imagectl.lock``) and ``.git`` would enter the image with
``context: .``, and any difference between imagectl's reading of the ignore files and
the builder's would go unseen. So the builders never get the user's directory: they
get a fresh directory holding the entries `ContextHasher.context_files` lists, and
nothing else. Regular files are hard-linked (copied when the staging directory is on
another filesystem), symlinks are recreated with the same target text, directories
keep their mode and mtime; empty directories, sockets and fifos are not staged. The
builder still applies its ignore file to the staged tree; that keeps what is there,
since every staged entry already passed the same rules.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imagectl.errors import BuildError, ImagectlError
from imagectl.inputs import ContextFile, ContextHasher


def stage_files(files: Iterable[ContextFile], source: Path, target: Path) -> int:
    """Recreate `files` (entries of the context `source`) under the empty directory `target`.

    Returns:
        The number of entries staged.

    Raises:
        OSError: an entry cannot be linked, copied or created.
    """
    directories: set[str] = set()
    count = 0
    for entry in files:
        if entry.kind not in ("f", "x", "l"):
            continue  # fifo, socket, device: never sent
        parent = os.path.dirname(entry.rel)
        while parent and parent not in directories:
            directories.add(parent)
            parent = os.path.dirname(parent)
        destination = os.path.join(target, entry.rel)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        if entry.kind == "l":
            os.symlink(entry.payload, destination)
        else:
            try:
                os.link(entry.path, destination)
            except OSError:  # another filesystem, or links not allowed here
                shutil.copy2(entry.path, destination)
        count += 1
    for rel in sorted(directories, key=lambda d: d.count("/"), reverse=True):
        shutil.copystat(source / rel, target / rel, follow_symlinks=False)  # after its content
    shutil.copystat(source, target)
    return count


@contextmanager
def staged_context(
    context: Path, dockerfile: Path, builder: str, parent: Path | None = None
) -> Iterator[Path]:
    """A temporary directory holding exactly what `builder` may send of `context`.

    Args:
        context: the build context as written in the request.
        dockerfile: the Dockerfile (relative: inside `context`); it selects the ignore file.
        builder: ``docker`` or ``buildah`` (whose ignore files apply).
        parent: where to create the directory (best on the context's filesystem, so
            files are hard-linked); default: the system's temporary directory.

    Raises:
        BuildError: the context cannot be read or staged.
    """
    try:
        files = ContextHasher().context_files(context, dockerfile, builder)
    except ImagectlError as exc:
        raise BuildError(f"cannot stage build context {context}: {exc}") from exc
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".context-", dir=parent) as tmp:
        try:
            stage_files(files, Path(os.path.abspath(context)), Path(tmp))
        except OSError as exc:
            raise BuildError(
                f"cannot stage build context {context} in {tmp}: {exc.strerror or exc}"
            ) from exc
        yield Path(tmp)


__all__ = ["stage_files", "staged_context"]
