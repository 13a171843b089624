"""What is published is what is committed: the clean-tree check and the revision label.

Before anything is built or pushed, apply compares the inputs of the run with HEAD:
the manifest files and, per planned image, its context and Dockerfile. A file that is
modified, staged, deleted or untracked (and not ignored) refuses the run, naming it.
The lock and imagectl's own state directory are never inputs. With ``--allow-dirty``
the run goes on and says so: the revision becomes ``<sha>-dirty``.
"""

from __future__ import annotations

from pathlib import Path

from imagectl import fsutil, gitops
from imagectl.errors import GitOpsError
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Plan

DIRTY_SUFFIX = "-dirty"
_SHOWN = 20  # files named in the refusal; the rest are counted


def input_paths(manifest: Manifest, plan: Plan) -> list[Path]:
    """The manifest files, then each planned image's context and Dockerfile."""
    paths = list(manifest.files)
    for action in plan.actions:
        image = manifest.images.get(action.image)
        if image is not None:
            paths += [image.context, image.dockerfile]
    return paths


def uncommitted(worktree: Path, manifest: Manifest, plan: Plan) -> list[str]:
    """The inputs of this run that differ from HEAD, relative to the work tree.

    A path outside the work tree cannot be committed: it is listed as such.
    """
    top = worktree.resolve()
    inside: list[Path] = []
    outside: list[str] = []
    for path in input_paths(manifest, plan):
        resolved = path.resolve()
        if resolved == top or top in resolved.parents:
            inside.append(resolved)
        else:
            outside.append(f"{path} (outside the git work tree {top})")
    excluded = {_rel(manifest.lock_path, top)}
    state = _rel(fsutil.state_dir(manifest.root_dir), top)
    changed = gitops.changed_files(top, sorted(set(inside))) if inside else []
    kept = [
        f for f in changed if f not in excluded and not (f == state or f.startswith(state + "/"))
    ]
    return [*kept, *sorted(set(outside))]


def _rel(path: Path, top: Path) -> str:
    resolved = path.parent.resolve() / path.name
    try:
        return resolved.relative_to(top).as_posix()
    except ValueError:
        return str(resolved)


def check_committed(
    worktree: Path | None, manifest: Manifest, plan: Plan, *, allow_dirty: bool
) -> bool:
    """Refuse a run whose inputs differ from HEAD, unless allowed.

    Args:
        worktree: The git work tree, or None outside git (no check).
        manifest: The loaded manifest.
        plan: The plan about to be applied (its images' contexts are checked).
        allow_dirty: Go on anyway (``--allow-dirty``).

    Returns:
        True when the run builds from uncommitted inputs (allowed): its revision is dirty.

    Raises:
        GitOpsError: Inputs differ from HEAD and ``allow_dirty`` is false; the message
            names the files (exit 1).
    """
    if worktree is None:
        return False
    files = uncommitted(worktree, manifest, plan)
    if not files or allow_dirty:
        return bool(files)
    shown = [f"  {name}" for name in files[:_SHOWN]]
    if len(files) > _SHOWN:
        shown.append(f"  ... and {len(files) - _SHOWN} more")
    raise GitOpsError(
        f"refusing to apply: {len(files)} input file{'s' if len(files) != 1 else ''} of this "
        f"run differ{'s' if len(files) == 1 else ''} from HEAD in {worktree} (modified, staged "
        "or untracked), so the published images would not match any commit:\n"
        + "\n".join(shown)
        + "\ncommit them (or add them to .gitignore), or pass --allow-dirty to build anyway "
        "(the revision label and the lock then say <sha>-dirty)"
    )


def run_revision(worktree: Path | None, dirty: bool) -> str | None:
    """The revision this run builds from: HEAD's sha, with ``-dirty`` when inputs differ."""
    head = gitops.head_revision(worktree) if worktree is not None else None
    if head is None:
        return None
    return head + DIRTY_SUFFIX if dirty else head


def clean_revision(revision: str | None) -> str | None:
    """The commit sha of a recorded revision (``<sha>-dirty`` -> ``<sha>``)."""
    return revision.removesuffix(DIRTY_SUFFIX) if revision else revision
