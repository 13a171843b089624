"""Benchmark `imagectl plan --json` on a generated fleet against a real local registry.

Cold: no lock, the images absent from the registry (each image's tags are listed
once to recover state). Warm: a lock records every image (only the external
bases are resolved). Reports wall time of the real CLI (interpreter start
included), the in-process planning time and the number of registry requests.

Usage: python -m bench.run [--families 100] [--chains 4] [--depth 5] [--bases 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.fleet import FleetShape, base_repository, write_fleet
from devenv.dockerd import ensure_dockerd
from devenv.registry import start_registry
from devenv.upstream import push_upstream_base
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.pipeline import compute_plan
from imagectl.plan.model import Plan, PlanOptions
from imagectl.registry import RegistryClient

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def lock_from_plan(plan: Plan) -> Lock:
    """A lock as if every action had been applied (digests made up, deterministically)."""
    lock = Lock()
    digests: dict[str, str] = {}
    for action in plan.actions:
        digest = fake_digest(f"{action.image}@{action.to_version}")
        digests[action.image] = digest
        base_digest = action.base.digest or digests[action.base.name]
        lock = lock.with_image(
            action.image,
            ImageRecord(
                repository=action.repository,
                version=action.to_version,
                digest=digest,
                tags=list(action.tags),
                base=BaseRecord(ref=action.base.ref, digest=base_digest),
                inputs=action.inputs,
                built_at=NOW,
                revision=None,
                versions={},
            ),
        )
    return lock


def plan_in_process(manifest_path: Path) -> tuple[float, int, Plan]:
    """Load + observe + plan + JSON, timed, with the request count."""
    start = time.perf_counter()
    manifest = load_manifest(manifest_path)
    with RegistryClient(max_concurrency=16) as client:
        plan, _ = compute_plan(manifest, client, now=NOW, options=PlanOptions())
        json.dumps(plan.to_json())
        requests = client.request_count
    return time.perf_counter() - start, requests, plan


def plan_cli(manifest_path: Path, *, cold_cache: bool = False) -> float:
    """Wall time of the real command, interpreter start included.

    `cold_cache` removes the manifest cache first (a fresh checkout's first run).
    """
    if cold_cache:
        shutil.rmtree(manifest_path.parent / ".imagectl" / "cache", ignore_errors=True)
    argv = [str(REPO / ".venv" / "bin" / "imagectl"), "-f", str(manifest_path)]
    start = time.perf_counter()
    subprocess.run(
        [*argv, "plan", "--json", "--now", NOW.isoformat()],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def best_of(runs: int, fn: object) -> float:
    assert callable(fn)
    return min(fn() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--families", type=int, default=100)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bases", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    shape = FleetShape(args.families, args.chains, args.depth, args.bases)
    work = Path(tempfile.mkdtemp(prefix="imagectl-bench-"))
    try:
        ensure_dockerd(work / "dockerd")
        registry = start_registry(work / "registry")
        try:
            for b in range(shape.bases):
                push_upstream_base(registry.host, base_repository(b), "1", f"bench base {b}")
            manifest_path = write_fleet(work / "fleet", registry.host, shape)
            cold_time, cold_requests, plan = plan_in_process(manifest_path)
            assert len(plan.actions) == shape.images, len(plan.actions)
            cold_cli = best_of(args.runs, lambda: plan_cli(manifest_path, cold_cache=True))
            cold_cached = best_of(args.runs, lambda: plan_cli(manifest_path))
            write_lock(manifest_path.parent / "imagectl.lock", lock_from_plan(plan))
            warm_time, warm_requests, warm_plan = plan_in_process(manifest_path)
            assert not warm_plan.actions, "a warm plan of an unchanged fleet must be empty"
            warm_cli = best_of(args.runs, lambda: plan_cli(manifest_path))
        finally:
            registry.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        (
            "cold: no lock, images absent, first run",
            cold_cli,
            cold_time,
            cold_requests,
            shape.images + shape.bases,
        ),
        (
            "cold: no lock, images absent, manifest cached",
            cold_cached,
            cold_time,
            cold_requests,
            shape.images + shape.bases,
        ),
        ("warm: lock present, manifest cached", warm_cli, warm_time, warm_requests, shape.bases),
    ]
    print(
        f"fleet: {shape.images} images ({shape.families} families x {shape.chains} chains "
        f"x depth {shape.depth}), {shape.bases} external bases; {os.cpu_count()} CPUs"
    )
    print("| case | `imagectl plan --json` wall | in-process plan | registry requests | budget |")
    print("| --- | --- | --- | --- | --- |")
    for name, cli, inproc, requests, budget in rows:
        print(f"| {name} | {cli:.2f} s | {inproc:.2f} s | {requests} | <= {budget} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
