"""Benchmarks of imagectl, each printed as a table of figures and goals.

Scenarios (default: all):

  client   imagectl's CPU per registry request (bench/requests_cpu.py): 2,000 HEADs of
           a manifest, GETs of a manifest and GETs of a small blob against a real local
           registry, through `RegistryClient` and through a bare `httpx.Client` (the
           floor), on 1 and on 8 threads. Ratio goal: imagectl <= 2x bare httpx.
  apply    imagectl's own overhead per image of an in-process apply of a 2,000-image
           fleet (--images) with a stub builder against a real local registry, as
           `apply` runs (with or without --git-push) and under --guard-races: the
           apply's wall time minus that of the same pushes alone (replayed in a
           loop), per image (time goal < 20 ms), the same in round trips of those
           pushes (load moves it less),
           imagectl's CPU per image, and its registry requests per image beyond the
           push and the tag PUTs (count goal <= 2; --guard-races adds reads by
           choice: no goal).
  apply-real
           the same overhead with the real docker builder (bench/apply_real.py): 30
           images (--real-images) of one COPY each, built and pushed one after the
           other by a plain script (`docker build` + `docker push --all-tags`, same
           client, flags, Dockerfiles and tags) and by `imagectl apply --jobs 1`
           (a child process: start-up, plan, apply, lock), unclaimed and under
           --git-push; each side of each run copies its own files (no shared cache).
           Figures: (imagectl wall - script wall) / images; the fixed cost (the
           apply again, nothing to do) and the per-image part beyond it; for a
           2,000-image apply, fixed cost / 2,000 + per-image part (time goal < 20 ms).
  plan     in-process `plan --json` on generated fleets (bench/fleet.py: families of
           4 chains x depth 5 on 10 external bases) against a real local registry:
           one family (20 images, the fixed cost), 2,000 and 10,000 images, cold (no
           lock) and warm (a lock records every image), and the first plan on empty
           caches. Figures: CPU and wall time, the 10k/2k CPU ratio after
           subtracting the fixed cost (goal <= 5.5: plans are linear), registry
           requests (goal: cold <= images + bases, warm <= bases), and whether
           `plan --json` imports builders, apply or GitPython (goal: none).
           Each timed plan starts with imagectl's in-memory caches emptied, as a
           new process. Time goals: 10k cold < 2 s, warm < 1 s of CPU.
  rebase   a family of COPY-only images (--rebase-images, default 500) after its base
           moved: republished by rebase (no builder may run) against rebuilt with
           docker, same --jobs 16 (bench/rebase.py; a few minutes). Figures: both wall
           times, their ratio (goal: rebase at most 0.10 of the rebuild, i.e. 10x
           faster) and imagectl's registry requests per rebased image.
  record   the lock recording of apply: 2,000 images recorded through the journal
           (one durable line each: preallocated, fdatasynced) into a lock of 2,000
           images, then compacted once. Figures: wall time (time goal < 1 s), the
           disk alone (the journal's way, and appends each fsynced), imagectl's own
           CPU (time goal < 1 s), and the old way (the whole lock rewritten per image).
  startup  wall time of `imagectl --version` and `imagectl --help` against
           `python -c pass` (goal: at most 4x).

Count goals fail the run (exit 1) when missed; ratio goals only with --strict;
time goals are reported, never asserted (they depend on the machine and its load).
Needs docker-registry and a docker daemon (the plan scenario pushes its bases).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import apply_bench, apply_real, plan_bench, rebase, record_bench, requests_cpu, startup
from bench.fleet import FleetShape
from bench.goals import Figure, failed, table

SCENARIOS = ("apply", "apply-real", "client", "plan", "rebase", "record", "startup")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"one or more of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument(
        "--strict", action="store_true", help="also exit 1 when a ratio goal is missed"
    )
    parser.add_argument(
        "--images",
        type=int,
        default=2000,
        help="images of the apply scenario (a multiple of 20; default 2000)",
    )
    parser.add_argument(
        "--real-images",
        type=int,
        default=30,
        help="images of the apply-real scenario (default 30)",
    )
    parser.add_argument(
        "--rebase-images",
        type=int,
        default=500,
        help="images of the rebase scenario (default 500)",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    all_figures: list[Figure] = []
    for scenario in chosen:
        if scenario in ("apply", "client", "plan", "record"):
            work = Path(tempfile.mkdtemp(prefix="imagectl-bench-"))
            try:
                if scenario == "apply":
                    shape = FleetShape(families=max(args.images // 20, 1))
                    figures = apply_bench.measure(work, args.runs, shape)
                elif scenario == "client":
                    figures = requests_cpu.measure(work, args.runs)
                elif scenario == "plan":
                    figures = plan_bench.measure(work, args.runs)
                else:
                    figures = record_bench.measure(work, args.runs)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        elif scenario == "apply-real":
            figures = apply_real.measure(args.runs, args.real_images)
        elif scenario == "rebase":
            figures = rebase.figures(args.rebase_images)
        else:
            figures = startup.measure(args.runs)
        print(table(scenario, figures), flush=True)
        all_figures += figures
    missed = failed(all_figures, strict=args.strict)
    for figure in missed:
        goal = figure.shown(figure.goal or 0)
        print(f"missed: {figure.name}: {figure.shown(figure.value)} > {goal}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
