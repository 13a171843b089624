"""Scenario `plan`: in-process `plan --json` on generated fleets against a real registry.

Fleets of one family (20 images: the fixed cost), 2,000 and 10,000 images, each
planned cold (no lock: every image new) and warm (a lock records every image).
Times are CPU seconds of the process (all threads), the best of ``--runs`` rounds;
each fleet is planned once before timing so that the caches under ``.imagectl/cache``
(the resolved manifest, file digests, explain snapshots) are filled, as on a
checkout that has been planned before. That first plan, on empty caches, is
reported too. A round plans every fleet once, in turn, so that the three sizes are
measured under the same load, not one after the other, and each gets as many runs
(a size given more runs would find quieter moments, and bias the ratio).
"""

from __future__ import annotations

import functools
import hashlib
import io
import subprocess
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.fleet import FleetShape, base_repository, write_fleet
from bench.goals import Figure
from devenv.dockerd import ensure_dockerd
from devenv.registry import start_registry
from devenv.upstream import push_upstream_base
from imagectl import service
from imagectl.gcpause import paused_gc
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.output.jsontext import dumps_indented
from imagectl.plan.model import Plan, PlanOptions
from imagectl.registry import RegistryClient

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIXED = FleetShape(families=1, chains=4, depth=5, bases=1)
SIZES = {"2k": FleetShape(families=100), "10k": FleetShape(families=500)}
BASES = 10
# Packages `plan --json` must not import (issue 12 goal 2): it builds nothing.
NOT_FOR_PLAN = ("imagectl.builders", "imagectl.apply", "git")
GOAL_RATIO = 5.5
GOAL_COLD_10K = 2.0
GOAL_WARM_10K = 1.0


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def lock_from_plan(plan: Plan) -> Lock:
    """A lock as if every action had been applied (digests made up, deterministically)."""
    records: dict[str, ImageRecord] = {}
    for action in plan.actions:
        digest = fake_digest(f"{action.image}@{action.to_version}")
        parent = records.get(action.base.name)
        base_digest = action.base.digest or (parent.digest if parent else "")
        records[action.image] = ImageRecord(
            repository=action.repository,
            version=action.to_version,
            digest=digest,
            tags=list(action.tags),
            base=BaseRecord(ref=action.base.ref, digest=base_digest),
            inputs=action.inputs,
            built_at=NOW,
            revision=None,
            versions={},
        )
    return Lock(images=records)


@dataclass(frozen=True)
class Run:
    cpu: float
    wall: float
    requests: int
    plan: Plan


def plan_in_process(manifest_path: Path) -> Run:
    """Load + observe + plan + JSON (what `plan --json` does), timed, with the request count.

    The collector is paused around planning and rendering, as `commands.plan_command` does.
    Every in-memory cache of imagectl is emptied first: each timed plan is a new CLI
    process's (only the caches on disk, under ``.imagectl/cache``, are kept).
    """
    forget_process_caches()
    cpu, wall = time.process_time(), time.perf_counter()
    manifest = load_manifest(manifest_path)
    with RegistryClient(max_concurrency=16) as client, paused_gc():
        plan = service.plan(manifest, client, now=NOW, options=PlanOptions()).plan
        with redirect_stdout(io.StringIO()):
            print(dumps_indented(plan.to_json()))
        requests = client.request_count
    return Run(time.process_time() - cpu, time.perf_counter() - wall, requests, plan)


def forget_process_caches() -> None:
    """Empty imagectl's in-memory caches (memoized pure functions),
    so that a plan in this process costs what the first plan of a new process costs."""
    for name, module in list(sys.modules.items()):
        if name == "imagectl" or name.startswith("imagectl."):
            for value in list(vars(module).values()):
                if isinstance(value, functools._lru_cache_wrapper):
                    value.cache_clear()


def reference_cpu(runs: int) -> float:
    """CPU seconds of a fixed pure-Python loop: compares machines, and shows load."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        sum(range(10**7))
        times.append(time.process_time() - start)
    return min(times)


def best_in_rounds(paths: dict[str, Path], runs: int) -> dict[str, Run]:
    """The fastest plan of each fleet over `runs` rounds, each round planning every fleet
    once, in turn."""
    found: dict[str, Run] = {}
    for _ in range(runs):
        for label, path in paths.items():
            run = plan_in_process(path)
            if label not in found or run.cpu < found[label].cpu:
                found[label] = run
    return found


def imported_by_plan(manifest_path: Path) -> list[str]:
    """The packages of NOT_FOR_PLAN that `imagectl plan --json` imports (real CLI process)."""
    probe = (
        "import atexit, sys\n"
        "def dump():\n"
        "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
        "atexit.register(dump)\n"
        "from imagectl.cli import main\n"
        "sys.argv = ['imagectl'] + sys.argv[1:]\n"
        "main()\n"
    )
    argv = ["-f", str(manifest_path), "plan", "--json", "--now", NOW.isoformat()]
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1):  # 1: the plan has changes
        raise RuntimeError(f"imagectl plan --json failed ({done.returncode}): {done.stderr}")
    line = next((x for x in done.stderr.splitlines() if x.startswith("MODULES ")), "")
    modules = line.split()[1:]
    return sorted({p for p in NOT_FOR_PLAN for m in modules if m == p or m.startswith(p + ".")})


def measure(work: Path, runs: int) -> list[Figure]:
    """Every figure of the scenario (starts a registry, pushes the bases with docker)."""
    ensure_dockerd(work / "dockerd")
    registry = start_registry(work / "registry")
    try:
        for b in range(BASES):
            push_upstream_base(registry.host, base_repository(b), "1", f"bench base {b}")
        return _measure_fleets(work, registry.host, runs)
    finally:
        registry.stop()


def _measure_fleets(work: Path, host: str, runs: int) -> list[Figure]:
    firsts: dict[str, Run] = {}
    paths: dict[str, Path] = {}
    for label, shape in {"fixed": FIXED, **SIZES}.items():
        path = paths[label] = write_fleet(work / label, host, shape)
        first = firsts[label] = plan_in_process(path)  # fills the caches
        assert len(first.plan.actions) == shape.images, (label, len(first.plan.actions))
    cold = best_in_rounds(paths, runs)
    for label, path in paths.items():
        write_lock(path.parent / "imagectl.lock", lock_from_plan(firsts[label].plan))
    warm = best_in_rounds(paths, runs)
    for label in paths:
        assert not warm[label].plan.actions, "a warm plan of an unchanged fleet must be empty"
    leaked = imported_by_plan(work / "fixed" / "imagectl.yaml")
    figures = [Figure("reference: `sum(range(10**7))`, CPU", reference_cpu(runs), "s", "time")]
    for label in SIZES:
        figures.append(
            Figure(f"first plan, empty caches: {label} images, CPU", firsts[label].cpu, "s", "time")
        )
    for mode, measured in (("cold", cold), ("warm", warm)):
        fixed = measured["fixed"].cpu
        figures.append(
            Figure(f"{mode}: fixed cost (one family, 20 images), CPU", fixed, "s", "time")
        )
        for label in SIZES:
            figures.append(
                Figure(
                    f"{mode}: {label} images, CPU",
                    measured[label].cpu,
                    "s",
                    "time",
                    _time_goal(mode, label),
                )
            )
            figures.append(
                Figure(f"{mode}: {label} images, wall", measured[label].wall, "s", "time")
            )
        ratio = (measured["10k"].cpu - fixed) / max(measured["2k"].cpu - fixed, 1e-9)
        figures.append(
            Figure(
                f"{mode}: 10k/2k CPU ratio minus the fixed cost", ratio, "x", "ratio", GOAL_RATIO
            )
        )
    for label, shape in SIZES.items():
        figures.append(
            Figure(
                f"cold: {label} registry requests",
                cold[label].requests,
                "",
                "count",
                shape.images + BASES,
            )
        )
        figures.append(
            Figure(f"warm: {label} registry requests", warm[label].requests, "", "count", BASES)
        )
    figures.append(
        Figure(
            "`plan --json` imports "
            + "/".join(NOT_FOR_PLAN)
            + (f" ({', '.join(leaked)})" if leaked else ""),
            len(leaked),
            "packages",
            "count",
            0,
        )
    )
    return figures


def _time_goal(mode: str, label: str) -> float | None:
    if label != "10k":
        return None
    return GOAL_COLD_10K if mode == "cold" else GOAL_WARM_10K
