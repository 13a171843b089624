"""The quick-start job: a real reconcile of `examples/` against a local registry, offline.

1. ensure dockerd runs (started with --bridge=none --iptables=false when absent);
2. start the reference registry on 127.0.0.1:5055, empty (another free port when
   5055 is taken; `IMAGECTL_DEV_PORT` chooses one);
3. publish small upstream bases (static busybox, FROM scratch) under the names
   `examples/imagectl.yaml` follows, as a vendor would;
4. copy `examples/` into a fresh git-ops repository pointing at that registry;
5. `imagectl apply` (builds everything), then the vendor ships a security update of
   the Debian stand-in, `imagectl plan` shows exactly what is stale and
   `imagectl apply` rebuilds it; a last `imagectl plan` is empty.

dockerd and the registry keep running afterwards (the local environment of
`scripts/dev.sh`, see devenv/local.py) so that the README's next steps work;
`--no-keep` stops the registry at the end instead.

Usage: python -m devenv.demo [--workdir DIR] [--builder docker|buildah] [--no-keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devenv import local
from devenv.upstream import push_upstream_base

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_REGISTRY = "localhost:5000"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def imagectl(gitops: Path, *args: str, check: bool = True) -> int:
    """Run the real CLI, as a user would."""
    argv = [str(REPO / ".venv" / "bin" / "imagectl"), "-f", str(gitops / "imagectl.yaml"), *args]
    print("$ imagectl " + " ".join(args), flush=True)
    code = subprocess.call(argv, cwd=gitops)
    if check and code not in (0,):
        raise SystemExit(f"imagectl {' '.join(args)} exited with {code}")
    return code


def make_gitops_repo(target: Path, registry_host: str, builder: str = "docker") -> None:
    """Copy examples/ to `target`, point it at `registry_host` and `builder`, commit it
    (apply refuses uncommitted manifests)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO / "examples", target, ignore=shutil.ignore_patterns(".imagectl"))
    for path in target.rglob("*.yaml"):
        text = path.read_text()
        text = text.replace(EXAMPLE_REGISTRY, registry_host)
        if path.name == "imagectl.yaml":
            text = text.replace("builder: docker", f"builder: {builder}")
        text = text.replace("../schemas/", f"{REPO}/schemas/").replace(
            "../../schemas/", f"{REPO}/schemas/"
        )
        path.write_text(text)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Platform Team",
        "GIT_AUTHOR_EMAIL": "platform@acme.test",
    }
    env |= {"GIT_COMMITTER_NAME": "Platform Team", "GIT_COMMITTER_EMAIL": "platform@acme.test"}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "ACME image families"],
    ):
        subprocess.run(argv, cwd=target, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".imagectl-run")
    parser.add_argument("--builder", choices=["docker", "buildah"], default="docker")
    parser.add_argument(
        "--no-keep",
        dest="keep",
        action="store_false",
        help="stop the registry at the end (default: keep it for scripts/dev.sh)",
    )
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()

    banner("docker engine and local registry (a fresh, empty registry every run)")
    registry = local.up(workdir, fresh=True)
    print(f"registry: {registry.url} (storage {registry.storage})")
    try:
        host = registry.host
        banner("upstream publishes its bases (busybox stand-ins, FROM scratch)")
        for line in local.publish_bases(registry):
            print(line)
        gitops = workdir / "gitops"
        make_gitops_repo(gitops, host, args.builder)
        banner(f"git-ops repository: {gitops}")
        imagectl(gitops, "validate")
        imagectl(gitops, "graph")

        banner("first reconcile: everything is new")
        imagectl(gitops, "apply")

        banner("the vendor ships a security update of debian:bookworm-slim (same tag)")
        digest = push_upstream_base(host, "upstream/debian", "bookworm-slim", "debian 12.7 build 2")
        print(f"{host}/upstream/debian:bookworm-slim -> {digest}")
        imagectl(gitops, "plan")

        banner("second reconcile: exactly the stale images, next versions")
        imagectl(gitops, "apply")

        banner("an unchanged world plans nothing")
        imagectl(gitops, "plan", "--detailed-exitcode")
        imagectl(gitops, "status")
        subprocess.run(["git", "--no-pager", "log", "--format=%h %s", "-n", "3"], cwd=gitops)
    finally:
        if not args.keep:
            print("\n".join(local.down(workdir)))
    if args.keep:
        banner("the local environment keeps running")
        print(f"registry {registry.url}; the demo's repository is {gitops}")
        print(f'next: eval "$(scripts/dev.sh env)"; cd {gitops} && imagectl plan')
        print("stop it with scripts/dev.sh down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
