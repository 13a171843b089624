"""The git-ops commit a plan is made at, read with the git CLI.

Planning needs only HEAD's sha (for `{sha}` tags and the revision label); the
git CLI answers that in one call, so the plan path never imports GitPython
(`imagectl.gitops` is for apply's commits and pushes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from imagectl.proc import run


def head_revision_at(path: Path) -> str | None:
    """Full sha of HEAD of the work tree containing `path`; None outside git or before a commit."""
    git = shutil.which("git")
    if git is None or not path.is_dir():
        return None
    result = run([git, "-C", str(path), "rev-parse", "--verify", "-q", "HEAD^{commit}"])
    sha = result.stdout.strip()
    return sha if result.ok and sha else None
