"""Scenario `apply-real`: imagectl's overhead per image with the real docker builder.

30 images (--real-images), each ``FROM ${BASE_IMAGE}`` (a busybox base from
devenv/upstream.py, pinned by digest) plus a ``COPY`` of its own file, are built and
pushed to a real local registry twice, one image after the other:

- by a plain shell script: per image ``docker build`` (tagged with every tag imagectl
  gives it) then ``docker push --all-tags``;
- by ``imagectl apply --jobs 1`` in a child process (start-up, plan, apply, lock),
  unclaimed (``--no-git``) and claimed (``--git-push`` to a local bare remote).

Same docker client, mode and flags as imagectl's builder (BuildKit, ``--progress
plain``, ``--network host``), same Dockerfiles, same image names and tags (each side
in its own namespace of the one registry). Fair cache state: the base is pulled into
the build cache once before anything is timed, and every side of every run copies
files of its own (a nonce), so no side reuses another's layers. Runs alternate which
side goes first; each side's best wall time over the runs counts.

imagectl's overhead per image at this size is (imagectl wall - script wall) / images.
Part of it is a fixed cost (start-up, imports, plan, the report), measured by the same
apply run again with nothing left to do, plus the builder's probes (`docker version`,
`docker build --help`, ...: once per apply that builds, timed apart); the rest is the
per-image part. The goal is
for a 2,000-image apply: fixed cost / 2,000 + the per-image part < 20 ms.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.goals import Figure
from bench.rebase import git_remote
from devenv.dockerd import ensure_dockerd
from devenv.registry import RegistryServer, start_registry
from devenv.upstream import push_upstream_base
from imagectl import service
from imagectl.builders.docker import DockerBuilder, DockerMode, build_network
from imagectl.manifest.loader import load_manifest
from imagectl.plan.model import PlanOptions
from imagectl.registry import RegistryClient, parse_reference

GOAL_PER_IMAGE_MS = 20.0
SCALE = 2000  # the goal's apply size: the fixed cost is shared by this many images
DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /srv/app.txt\n"
MODES = ("unclaimed", "claimed")  # imagectl apply --no-git / --git-push


def write_family(root: Path, host: str, namespace: str, upstream: str, images: int) -> Path:
    """A manifest of `images` COPY-only images under `host/namespace`; its path.

    Each image copies a file naming the namespace: a namespace's layers are its own.
    The manifest is written as JSON, which is YAML.
    """
    family: dict[str, object] = {}
    for index in range(images):
        name = f"img{index:03d}"
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(DOCKERFILE)
        (root / name / "app.txt").write_text(f"{namespace} {name}\n")
        family[name] = {"from": "upstream", "context": name, "version": "1.0"}
    manifest = {
        "version": 1,
        "registry": f"{host}/{namespace}",
        "defaults": {"builder": "docker", "network": "host"},
        "bases": {"upstream": {"ref": upstream}},
        "families": {"fleet": {"images": family}},
    }
    (root / "imagectl.yaml").write_text(json.dumps(manifest, indent=2) + "\n")
    return root / "imagectl.yaml"


def script_text(manifest_path: Path, host: str) -> str:
    """The plain build-and-push script of the family: what imagectl replaces.

    Per image, in plan order: one ``docker build`` tagged with all the image's tags
    (the base pinned by digest, as imagectl pins it) and one ``docker push --all-tags``;
    the docker client, mode and network are the ones imagectl's builder chooses.
    """
    manifest = load_manifest(manifest_path)
    with RegistryClient(insecure_registries=[host]) as client:
        plan = service.plan(manifest, client, now=datetime.now(UTC), options=PlanOptions()).plan
    choice = DockerBuilder().detect()
    docker = shlex.quote(choice.probe.binary)
    lines = ["#!/bin/sh", "set -e"]
    if choice.mode is DockerMode.BUILDKIT:
        lines.append("export DOCKER_BUILDKIT=1")
    progress = "" if choice.mode is DockerMode.CLASSIC else " --progress plain"
    network = build_network(choice, "host")
    for action in plan.actions:
        image = manifest.images[action.image]
        base = f"{parse_reference(action.base.ref).name}@{action.base.digest}"
        tags = " ".join(f"--tag {shlex.quote(f'{action.repository}:{t}')}" for t in action.tags)
        context = shlex.quote(str(image.context))
        lines.append(
            f"{docker} build{progress} {tags} --build-arg BASE_IMAGE={shlex.quote(base)}"
            f" --file {context}/Dockerfile"
            + (f" --network {network}" if network else "")
            + f" {context} >/dev/null"
        )
        lines.append(f"{docker} push --all-tags {shlex.quote(action.repository)} >/dev/null")
    return "\n".join(lines) + "\n"


def timed(argv: list[str], cwd: Path) -> float:
    """Wall time of `argv`, which must succeed."""
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return wall


def run_script(work: Path, host: str, upstream: str, namespace: str, images: int) -> float:
    manifest_path = write_family(work / namespace, host, namespace, upstream, images)
    script = work / f"{namespace}.sh"
    script.write_text(script_text(manifest_path, host))
    return timed(["sh", str(script)], manifest_path.parent)


def run_imagectl(
    work: Path, host: str, upstream: str, namespace: str, images: int, mode: str
) -> tuple[float, float]:
    """Wall times of the apply, and of the same apply again with nothing left to do."""
    manifest_path = write_family(work / namespace, host, namespace, upstream, images)
    git = "--no-git"
    if mode == "claimed":
        git_remote(manifest_path.parent, work / f"{namespace}.git")
        git = "--git-push"
    argv = [sys.executable, "-m", "imagectl", "-f", str(manifest_path), "apply", "--jobs", "1", git]
    return timed(argv, manifest_path.parent), timed(argv, manifest_path.parent)


@dataclass(frozen=True)
class Sides:
    """Best wall times of one comparison: the script, and imagectl in each mode."""

    images: int
    script: float
    imagectl: dict[str, float]  # mode -> wall of the apply
    noop: dict[str, float]  # mode -> wall of an apply with nothing to do
    probes: float = 0.0  # the builder's probes (`docker version`, ...): once per apply

    def fixed(self, mode: str) -> float:
        """imagectl's fixed cost: a no-op apply (start-up, plan, report) and the probes
        of the builder, which only an apply that builds runs."""
        return self.noop[mode] + self.probes

    def overhead_ms(self, mode: str) -> float:
        """imagectl's overhead per image at this size: (imagectl - script) / images."""
        return (self.imagectl[mode] - self.script) / self.images * 1000

    def marginal_ms(self, mode: str) -> float:
        """The per-image part: (imagectl - fixed cost - script) / images."""
        return (self.imagectl[mode] - self.fixed(mode) - self.script) / self.images * 1000

    def at_scale_ms(self, mode: str, images: int = SCALE) -> float:
        """Overhead per image of an apply of `images`: the fixed cost shared, plus the
        per-image part."""
        return self.fixed(mode) / images * 1000 + self.marginal_ms(mode)

    def figures(self) -> list[Figure]:
        n = self.images
        shown = [
            Figure(f"plain script: build + push of {n} images, wall", self.script, "s", "time")
        ]
        for mode in self.imagectl:
            flag = "--git-push" if mode == "claimed" else "--no-git"
            shown += [
                Figure(f"{mode}: imagectl apply {flag}, wall", self.imagectl[mode], "s", "time"),
                Figure(
                    f"{mode}: fixed cost (the apply again with nothing to do, + the probes)",
                    self.fixed(mode),
                    "s",
                    "time",
                ),
                Figure(
                    f"{mode}: overhead per image at {n} images",
                    self.overhead_ms(mode),
                    "ms",
                    "time",
                ),
                Figure(
                    f"{mode}: overhead per image beyond the fixed cost",
                    self.marginal_ms(mode),
                    "ms",
                    "time",
                ),
                Figure(
                    f"{mode}: imagectl's own overhead per image at {SCALE:,} images",
                    self.at_scale_ms(mode),
                    "ms",
                    "time",
                    GOAL_PER_IMAGE_MS,
                ),
            ]
        return shown


def compare(work: Path, registry: RegistryServer, images: int, runs: int) -> Sides:
    """Build and push the family `runs` times per side, alternating who goes first."""
    host = registry.host
    push_upstream_base(host, "upstream/apply-real", "1", "apply-real")
    upstream = f"{host}/upstream/apply-real:1"
    run_script(work, host, upstream, "warmup", 1)  # the base layers into the build cache
    script: list[float] = []
    walls: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for run in range(runs):
        sides = ["script", *MODES]
        for side in sides[run % len(sides) :] + sides[: run % len(sides)]:
            namespace = f"{side}-{run}"
            if side == "script":
                script.append(run_script(work, host, upstream, namespace, images))
            else:
                walls[side].append(run_imagectl(work, host, upstream, namespace, images, side))
    best = {mode: min(w) for mode, w in walls.items()}  # the best apply, its own no-op
    applies, noops = {m: w[0] for m, w in best.items()}, {m: w[1] for m, w in best.items()}
    return Sides(images, min(script), applies, noops, min(probe_seconds() for _ in range(runs)))


def probe_seconds() -> float:
    """Wall time of the docker builder's probes, as an apply that builds runs them once."""
    start = time.perf_counter()
    DockerBuilder().check()
    return time.perf_counter() - start


def remove_local_images(host: str) -> None:
    """Remove the images the runs left in docker's store (every tag under `host`)."""
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [ref for ref in listed.stdout.split() if ref.startswith(f"{host}/")]
    if ours:
        subprocess.run(["docker", "image", "rm", *ours], capture_output=True, check=False)


def measure(runs: int, images: int = 30) -> list[Figure]:
    """The `apply-real` scenario of `python -m bench.run`."""
    work = Path(tempfile.mkdtemp(prefix="imagectl-bench-real-"))
    try:
        ensure_dockerd(work / "dockerd")
        registry = start_registry(work / "registry")
        try:
            sides = compare(work, registry, images, runs)
        finally:
            registry.stop()
            remove_local_images(registry.host)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sides.figures()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(measure(1, int(sys.argv[1]) if len(sys.argv) > 1 else 30))
