"""A git-ops repository of one family for the multi-platform and rebase e2e tests."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devenv.upstream import push_upstream_base
from tests.e2e.test_reconcile import GIT_ENV, GitOps


def make_family(
    root: Path,
    host: str,
    upstream_ref: str,
    images: Mapping[str, tuple[str, str]],
    defaults: Mapping[str, str],
) -> GitOps:
    """Write and commit `imagectl.yaml` with `images` (name -> (from, Dockerfile)).

    Each image's context holds its Dockerfile (``{name}`` replaced) and ``<name>.txt``.
    `defaults` are written as-is under ``defaults:`` (``builder``, ``platforms``, …).
    """
    namespace = f"fam-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    lines = ["version: 1", f"registry: {host}/{namespace}", "defaults:"]
    lines += [f"  {key}: {value}" for key, value in defaults.items()]
    lines += ["bases:", "  upstream:", f"    ref: {upstream_ref}", "families:", "  all:"]
    lines.append("    images:")
    for name, (base, dockerfile) in images.items():
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(dockerfile.replace("{name}", name))
        (root / name / f"{name}.txt").write_text(f"{name} v1\n")
        lines += [f"      {name}:", f"        from: {base}", f"        context: {name}"]
        lines.append('        version: "1.0"')
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    commit(root, "init", "-A")
    return GitOps(root, host, namespace)


def commit(root: Path, message: str, *add: str) -> None:
    """`git add` (when `add` names something) and commit everything in `root`."""
    env = {**os.environ, **GIT_ENV}
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=env)
    if add:
        subprocess.run(["git", "add", *add], cwd=root, check=True, env=env)
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True, env=env)


def upstream_publisher(host: str, prefix: str, **push: Any) -> Callable[[str], tuple[str, str]]:
    """Publish (or re-publish) a fresh upstream base: marker -> (reference by tag, digest)."""
    repository = f"upstream/{prefix}-{uuid.uuid4().hex[:8]}"

    def publish(marker: str) -> tuple[str, str]:
        digest = push_upstream_base(host, repository, "stable", marker, **push)
        return f"{host}/{repository}:stable", digest

    return publish
