"""Benchmark rebase against rebuild: a family of COPY-only images after a base update.

1. Publish an upstream base (busybox FROM scratch) and write a family of N images,
   each ``FROM ${BASE_IMAGE}`` + ``COPY`` of its own file, with ``update: auto``.
2. Build image 0 for real with docker; publish the other N-1 as that image with
   their own labels (blob mounts, a config per image) and record them in the lock,
   as an apply of N builds would have (building them all takes minutes).
3. Re-publish the upstream base. Time ``imagectl apply`` of the whole family with
   ``IMAGECTL_DOCKER`` naming no executable: any builder invocation would fail it,
   so success proves 0 builder invocations.
4. Time ``imagectl apply --force`` of every image (docker builds, same ``--jobs``, same
   launcher). ``--sample K`` rebuilds K images only and extrapolates fairly: the fixed
   cost of an apply (start, plan, report: a no-op apply of the same images) is taken
   out of the sample before scaling, and the no-op apply of all N is added back.

Every apply runs in a child process that counts imagectl's registry requests by kind
(``--profile DIR`` also writes cProfile data of the rebase apply, every thread, in CPU
time). The CPU seconds of the apply and of the registry process are shown next to wall
times, and the rebase's wall time is split into its image jobs, the main thread's console
output and the rest. The rebase producer alone (no tag PUT, verify or lock) is timed after
the timed apply, so that it mounts nothing ahead of it.

Usage: python -m bench.rebase [--images 500] [--sample K] [--jobs 16] [--profile DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.goals import Figure
from devenv.dockerd import docker_cli, ensure_dockerd
from devenv.registry import RegistryServer, start_registry
from devenv.upstream import push_upstream_base
from imagectl import service
from imagectl.labels import base_annotations, build_labels
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, read_lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.plan.model import Action, PlanOptions
from imagectl.rebase.publish import Rebaser, RebaseRequest
from imagectl.rebase.sources import Doc, PublishedDocs
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC).replace(microsecond=0)
CORES = os.cpu_count() or 1
# both sides' --jobs: 16 keeps the registry and dockerd busy while other images wait on
# I/O; measured against 8 on both sides (docs/benchmarks.md, rebase)
DEFAULT_JOBS = 16
DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /srv/app.txt\n"


def write_family(root: Path, host: str, upstream: str, images: int) -> Path:
    """The manifest of one family of `images` COPY-only images on `upstream`."""
    lines = [
        "version: 1",
        f"registry: {host}/rebase-bench",
        "defaults:",
        "  builder: docker",
        "  network: host",
        "  update: auto",
        "bases:",
        "  upstream:",
        f"    ref: {upstream}",
        "families:",
        "  fleet:",
        "    images:",
    ]
    for index in range(images):
        name = f"img{index:04d}"
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(DOCKERFILE)
        (root / name / "app.txt").write_text(f"{name}\n")
        lines += [f"      {name}:", "        from: upstream", f"        context: {name}"]
        lines.append('        version: "1.0"')
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    return root / "imagectl.yaml"


@dataclass(frozen=True)
class Run:
    """One apply: wall time, CPU of the apply and of the registry, imagectl's requests."""

    wall: float
    cpu: float
    registry_cpu: float
    requests: Counter[str]
    dockerd_cpu: float  # the shared docker daemon's (other users' work included)
    # wall seconds: "jobs" (the image jobs), "output" (the main thread's console output)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def request_total(self) -> int:
        return sum(self.requests.values())


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu(pid)
        except OSError:
            continue
    return total


def imagectl(
    manifest: Path,
    *args: str,
    registry_pid: int,
    env: dict[str, str] | None = None,
    profile: Path | None = None,
) -> Run:
    """One real CLI run (it must succeed) in a counting child; `profile`: cProfile it."""
    with tempfile.TemporaryDirectory(prefix="imagectl-bench-child-") as tmp:
        out = profile or Path(tmp)
        argv = [sys.executable, "-m", "bench.rebase", "--child", str(out), str(bool(profile))]
        argv += ["-f", str(manifest), *args]
        registry_before = process_cpu(registry_pid)
        daemons = pids_named("dockerd")
        dockerd_before = cpu_of(daemons)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        registry_cpu = process_cpu(registry_pid) - registry_before
        dockerd_cpu = cpu_of(daemons) - dockerd_before
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        requests = Counter(json.loads((out / "requests.json").read_text()))
        phases = json.loads((out / "phases.json").read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(wall, cpu, registry_cpu, requests, dockerd_cpu, phases)


def clone_as(
    client: RegistryClient, model: Action, model_digest: str, action: Action, base_digest: str
) -> OciManifest:
    """Publish image 0's build under `action`'s repository and tags with its own labels."""
    source = parse_reference(model.repository)
    target = parse_reference(action.repository)
    manifest = client.get_manifest(source.with_digest(model_digest))
    config = json.loads(client.get_blob(source, manifest.data["config"]["digest"]))
    for layer in manifest.data["layers"]:
        client.mount_blob(target, layer["digest"], source)
    config["config"]["Labels"] = build_labels(
        user_labels={},
        name=action.image,
        family=action.family,
        version=action.to_version,
        base_name=action.base.ref,
        base_digest=base_digest,
        created=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        revision=None,
        source=None,
        inputs=action.inputs,
    )
    raw_config = json.dumps(config).encode()
    digest = client.push_blob(target, raw_config)
    data = {**manifest.data, "config": {**manifest.data["config"], "digest": digest}}
    data["config"]["size"] = len(raw_config)
    clone = OciManifest.from_bytes(json.dumps(data).encode(), manifest.media_type)
    for tag in action.tags:
        client.put_manifest(target.with_tag(tag), clone)
    return clone


def seed(manifest_path: Path, host: str) -> int:
    """Build image 0 for real, publish the others as clones, record them all; N."""
    manifest = load_manifest(manifest_path)
    with RegistryClient(insecure_registries=[host], max_concurrency=16) as client:
        plan = service.plan(manifest, client, now=NOW, options=PlanOptions()).plan
        first = plan.actions[0]
        model_build = ["apply", "--no-git", "--only", first.image]
        cli = [str(REPO / ".venv" / "bin" / "imagectl"), "-f", str(manifest_path)]
        subprocess.run([*cli, *model_build], check=True, capture_output=True)
        lock = read_lock(manifest_path.parent / "imagectl.lock") or Lock()
        model = lock.images[first.image]
        published = PublishedDocs.of(manifest.root_dir)
        for action in plan.actions[1:]:
            assert action.base.digest is not None
            clone = clone_as(client, first, model.digest, action, action.base.digest)
            # what the verify of a build leaves for its next rebase: the manifest, not
            # the config (image 0's own apply wrote its file the same way)
            published.save(action.image, {clone.digest: Doc(clone.media_type, clone.raw)})
            digest = clone.digest
            lock = lock.with_image(
                action.image,
                ImageRecord(
                    repository=action.repository,
                    version=action.to_version,
                    digest=digest,
                    tags=list(action.tags),
                    base=BaseRecord(ref=action.base.ref, digest=action.base.digest),
                    inputs=action.inputs,
                    built_at=NOW,
                    revision=None,
                    versions={},
                ),
            )
    write_lock(manifest_path.parent / "imagectl.lock", lock)
    return len(plan.actions)


def request_kind(request: httpx.Request) -> str:
    """``METHOD what`` of one registry request (manifest by tag/digest, blob, upload, mount)."""
    path = request.url.path
    if "/blobs/uploads/" in path:
        params = request.url.params
        what = "mount" if "mount" in params else "upload+digest" if "digest" in params else "upload"
    elif "/manifests/" in path:
        what = "manifest@digest" if "sha256:" in path else "manifest:tag"
    elif "/blobs/" in path:
        what = "blob"
    else:
        what = path.rsplit("/", 1)[-1] or path
    return f"{request.method} {what}"


def child(out: Path, profile: bool, args: list[str]) -> None:
    """Run the CLI in this process counting registry requests by kind; `profile`: under
    cProfile (the main thread and every worker thread)."""
    import cProfile

    from imagectl.registry.session import RegistrySession

    counts: Counter[str] = Counter()
    mutex = threading.Lock()
    original = RegistrySession._exchange

    def counting(
        self: RegistrySession, request: httpx.Request, *args: Any
    ) -> tuple[httpx.Response, httpx.Request | None]:
        with mutex:
            counts[request_kind(request)] += 1
        return original(self, request, *args)

    RegistrySession._exchange = counting  # type: ignore[method-assign,assignment]
    phases = timing_phases()
    profiles: list[cProfile.Profile] = []
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:  # the workers' time too
        thread_profile = cProfile.Profile(time.thread_time)  # CPU, not wall
        with mutex:
            profiles.append(thread_profile)
        thread_profile.runcall(thread_run, self)

    if profile:
        threading.Thread.run = profiled_run  # type: ignore[method-assign]
    sys.argv = ["imagectl", *args]
    from imagectl.cli import main as cli_main

    profiler = cProfile.Profile(time.thread_time)
    code = 0
    begun = time.perf_counter()
    try:
        if profile:
            profiler.runcall(cli_main)
        else:
            cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        phases["main"] = time.perf_counter() - begun
        out.mkdir(parents=True, exist_ok=True)
        if profile:
            profiler.dump_stats(out / "apply.prof")
            for number, thread_profile in enumerate(profiles):
                thread_profile.dump_stats(out / f"thread{number}.prof")
        (out / "requests.json").write_text(json.dumps(dict(counts.most_common()), indent=1))
        (out / "phases.json").write_text(json.dumps(phases))
    raise SystemExit(code)


def timing_phases() -> dict[str, float]:
    """Seconds of wall time, filled in while the CLI runs: the image jobs (`run_dag`), the
    main thread's console output (plan table, summary table, notes), the plan
    (`service.plan`), the claims and checks before the jobs (`service.prepare` without the
    plans it makes: "prepare"), what follows the jobs (`service.run` without them: lock, git) and
    "main", all of the CLI's run (start-up is the child's wall time beyond it)."""
    from rich.console import Console

    from imagectl import service
    from imagectl.apply import engine, scheduler

    phases = dict.fromkeys(("jobs", "output", "plan", "prepare", "run", "main"), 0.0)

    def timed(function: Any, phase: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - start

        return wrapper

    console_print = Console.print

    def timed_print(self: Console, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return console_print(self, *args, **kwargs)  # progress lines: part of the jobs
        timed(console_print, "output")(self, *args, **kwargs)

    vars(engine)["run_dag"] = timed(scheduler.run_dag, "jobs")  # the name the engine calls
    for name in ("plan", "prepare", "run"):  # the names commands.py calls
        setattr(service, name, timed(getattr(service, name), name))
    prepare = service.prepare

    def claims(*args: Any, **kwargs: Any) -> Any:  # without a re-plan it makes
        planned = phases["plan"]
        try:
            return prepare(*args, **kwargs)
        finally:
            phases["prepare"] -= phases["plan"] - planned

    vars(service)["prepare"] = claims
    Console.print = timed_print  # type: ignore[method-assign]
    return phases


def rest_split(wall: float, phases: dict[str, float]) -> str:
    """The rebase's wall time beyond its jobs and console output, by phase."""
    jobs, output, plan = phases.get("jobs", 0.0), phases.get("output", 0.0), phases["plan"]
    claims, after = phases["prepare"], phases["run"] - jobs
    other = phases["main"] - plan - claims - phases["run"] - output
    return (
        f"start-up {wall - phases['main']:.1f} s, plan {plan:.1f} s, claims and checks "
        f"{claims:.1f} s, after the jobs (lock, git) {after:.1f} s, other {other:.1f} s"
    )


def producer_only(lock: Lock, host: str, upstream: str, jobs: int) -> tuple[float, int]:
    """Wall time and requests of the rebase producer alone on every image of `lock` (the
    same `jobs` threads, no tag PUT, verify, floating tags or lock): its lower bound.

    Run after the timed apply, so that the apply finds no blob mounted for it."""
    created = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    with RegistryClient(insecure_registries=[host], max_concurrency=jobs) as client:
        base = parse_reference(upstream)
        info = client.head_manifest(base)
        assert info is not None
        requests = []
        for name, record in sorted(lock.images.items()):
            assert record.base is not None
            labels = build_labels(
                user_labels={},
                name=name,
                family="fleet",
                version="1.0.1",
                base_name=upstream,
                base_digest=info.digest,
                created=created,
                revision=None,
                source=None,
                inputs=record.inputs,
            )
            requests.append(
                RebaseRequest(
                    repository=parse_reference(record.repository),
                    old_digest=record.digest,
                    old_base=base.with_digest(record.base.digest),
                    new_base=base.with_digest(info.digest),
                    labels=labels,
                    annotations=base_annotations(upstream, info.digest),
                    created=created,
                )
            )
        rebaser = Rebaser(client)
        before = client.request_count
        start = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(rebaser.rebase, requests))
        return time.perf_counter() - start, client.request_count - before


@dataclass(frozen=True)
class Result:
    """What the benchmark measured."""

    images: int
    jobs: int
    rebase: Run
    rebuild: Run  # measured on `sample` images
    sample: int
    noop_all: Run  # an apply with nothing to do: the fixed cost of the whole family
    noop_sample: Run  # the same for the sample's images
    producer: tuple[float, int]  # the rebase producer alone: wall time, requests
    git: bool = False  # both sides applied with --git-push
    again: Run | None = None  # the next base update's rebase: the documents kept by the first

    def ratio_of(self, run: Run) -> float:
        return self.rebuild_all / run.wall

    @property
    def rebuild_all(self) -> float:
        """Wall time of rebuilding every image (measured, or extrapolated fairly)."""
        if self.sample == self.images:
            return self.rebuild.wall
        per_image = max(0.0, self.rebuild.wall - self.noop_sample.wall) / self.sample
        return self.noop_all.wall + per_image * self.images

    @property
    def ratio(self) -> float:
        return self.rebuild_all / self.rebase.wall

    def lines(self) -> list[str]:
        n, rebase, rebuild = self.images, self.rebase, self.rebuild
        measured = "measured" if self.sample == n else f"extrapolated from {self.sample}"
        per_rebase = (rebase.request_total - self.noop_all.request_total) / n
        kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(rebase.requests.items()))
        jobs, output = rebase.phases.get("jobs", 0.0), rebase.phases.get("output", 0.0)
        return [
            f"images: {n} COPY-only, --jobs {self.jobs}" + (", --git-push" if self.git else ""),
            f"rebase of {n} after a base update: {rebase.wall:.1f} s wall "
            f"({1000 * rebase.wall / n:.0f} ms/image), 0 builder invocations; CPU: apply "
            f"{rebase.cpu:.1f} s, registry {rebase.registry_cpu:.1f} s",
            f"  rebase producer alone (a run of its own: no tag PUT, verify, floating tags, lock): "
            f"{self.producer[0]:.1f} s ({1000 * self.producer[0] / n:.0f} ms/image), "
            f"{self.producer[1] / n:.1f} requests/image",
            f"  wall: image jobs {jobs:.1f} s, console output of the main thread (plan and "
            f"summary tables) {output:.1f} s, the rest (start, plan, claims, lock, git) "
            f"{rebase.wall - jobs - output:.1f} s; CPU floor on {CORES} cores "
            f"{(rebase.cpu + rebase.registry_cpu) / CORES:.1f} s",
            *(
                [f"  the rest: {rest_split(rebase.wall, rebase.phases)}"]
                if "main" in rebase.phases
                else []
            ),
            f"  registry requests: {rebase.request_total} ({per_rebase:.1f}/image beyond a "
            f"no-op apply's {self.noop_all.request_total}); per image: {kinds}",
            f"rebuild of {self.sample}: {rebuild.wall:.1f} s wall; CPU: apply {rebuild.cpu:.1f} s"
            f" (docker CLI included), registry {rebuild.registry_cpu:.1f} s, dockerd "
            f"{rebuild.dockerd_cpu:.1f} s (shared daemon); imagectl's "
            f"requests {rebuild.request_total} (docker's own not counted)",
            f"no-op apply (fixed cost): {self.noop_all.wall:.1f} s for {n} images, "
            f"{self.noop_sample.wall:.1f} s for the {self.sample} rebuilt",
            f"rebuild of {n}: {self.rebuild_all:.1f} s ({measured}), "
            f"{1000 * self.rebuild_all / n:.0f} ms/image",
            f"rebase is {self.ratio:.1f}x faster than rebuilding",
            *(self._again_lines() if self.again is not None else []),
        ]

    def _again_lines(self) -> list[str]:
        n, again = self.images, self.again
        assert again is not None
        kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(again.requests.items()))
        return [
            f"next rebase of {n} (the next base update: each image's manifest and config "
            f"kept by the first rebase's publish): {again.wall:.1f} s wall; CPU: apply "
            f"{again.cpu:.1f} s, registry {again.registry_cpu:.1f} s; per image: {kinds}",
            f"the next rebase is {self.ratio_of(again):.1f}x faster than rebuilding",
        ]


def figures(images: int = 500, jobs: int = DEFAULT_JOBS) -> list[Figure]:
    """The `rebase` scenario of `python -m bench.run`: the whole measurement, as figures
    (the rebase's share of the rebuild's wall time has the goal: at most 0.10, i.e. at
    least 10x faster)."""
    result = measure_in_sandbox(images, None, jobs, None)
    print("\n".join(result.lines()), flush=True)
    n = result.images
    return [
        Figure(f"rebase of {n} images after a base update, wall", result.rebase.wall, "s", "time"),
        Figure(f"rebuild of the same {n} images (docker), wall", result.rebuild_all, "s", "time"),
        Figure("rebase wall time / rebuild wall time", 1 / result.ratio, "x", "ratio", 0.10),
        *(
            [
                Figure(
                    "the next rebase (documents kept) / rebuild wall time",
                    1 / result.ratio_of(result.again),
                    "x",
                    "ratio",
                )
            ]
            if result.again is not None
            else []
        ),
        Figure(
            "imagectl's registry requests per rebased image",
            result.rebase.request_total / n,
            "",
            "count",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[2] == "True", argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument(
        "--sample",
        type=int,
        help="images rebuilt for the baseline (default: all; fewer extrapolate)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"--jobs of both applies (default {DEFAULT_JOBS}: on 2 cores no slower than 8 "
        "for the rebuild, faster for the rebase; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile the rebase apply and count its registry requests (into this directory)",
    )
    parser.add_argument(
        "--git-push",
        action="store_true",
        help="apply with --git-push (versions claimed in a local bare remote) on both sides",
    )
    args = parser.parse_args(argv)
    result = measure_in_sandbox(args.images, args.sample, args.jobs, args.profile, args.git_push)
    print("\n".join(result.lines()))
    return 0


def git_remote(worktree: Path, remote: Path) -> None:
    """Make `worktree` a git repository with everything committed, pushed to a local bare
    `remote` (no network): applies with ``--git-push`` claim their versions there."""

    def git(*args: str, cwd: Path = worktree) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    git("init", "-q", "--bare", str(remote), cwd=worktree.parent)
    git("init", "-q", "-b", "main")
    git("config", "user.name", "bench")
    git("config", "user.email", "bench@example.invalid")
    git("add", "-A")
    git("commit", "-q", "-m", "family")
    git("remote", "add", "origin", str(remote))
    git("push", "-q", "-u", "origin", "main")


def measure_in_sandbox(
    images: int, sample: int | None, jobs: int, profile: Path | None, git_push: bool = False
) -> Result:
    """`measure` in a work directory of its own with a registry of its own; both, and the
    images built into the docker daemon, are gone afterwards."""
    work = Path(tempfile.mkdtemp(prefix="imagectl-bench-rebase-"))
    try:
        ensure_dockerd(work / "dockerd")
        registry = start_registry(work / "registry")
        try:
            return measure(work, registry, images, sample, jobs, profile, git_push)
        finally:
            registry.stop()
            remove_images(registry.host)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_images(host: str, docker: str | None = None) -> None:
    """Remove from the docker daemon the images this run built (all named after its
    registry, `host`). A daemon that keeps thousands of images builds more slowly: left
    behind, each run would make the next run's rebuild slower and its ratio larger."""
    docker = docker or docker_cli()
    listed = subprocess.run(
        [docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = [ref for ref in listed.stdout.split() if ref.startswith(f"{host}/")]
    for start in range(0, len(mine), 200):  # a bounded argv per call
        batch = mine[start : start + 200]
        subprocess.run([docker, "image", "rm", "--force", *batch], capture_output=True, check=False)


def compile_imagectl() -> None:
    """Byte-compile imagectl once, as installing it does (pip compiles a wheel's modules).

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (as on the machines this
    bench runs on) would compile every module again at each start of the CLI, about
    0.2 s per apply here, which no installed imagectl pays. Both sides gain alike.
    """
    for package in ("imagectl", "bench", "devenv"):  # bench's child imports all three
        compileall.compile_dir(REPO / package, quiet=1)


def measure(
    work: Path,
    registry: RegistryServer,
    images: int,
    sample: int | None,
    jobs: int,
    profile: Path | None,
    git_push: bool = False,
) -> Result:
    """Seed the family, move its base, rebase it all, then rebuild (a sample of) it."""
    compile_imagectl()
    push_upstream_base(registry.host, "upstream/rebase-bench", "1", "bench v1")
    upstream = f"{registry.host}/upstream/rebase-bench:1"
    manifest_path = write_family(work / "family", registry.host, upstream, images)
    count = seed(manifest_path, registry.host)
    push_upstream_base(registry.host, "upstream/rebase-bench", "1", "bench v2")
    seeded = read_lock(manifest_path.parent / "imagectl.lock")
    assert seeded is not None
    no_builder = {"IMAGECTL_DOCKER": str(work / "no-docker")}
    if git_push:
        git_remote(manifest_path.parent, work / "remote.git")
    common = ["--jobs", str(jobs), "--git-push" if git_push else "--no-git"]
    pid = registry.process.pid
    rebase = imagectl(
        manifest_path, "apply", *common, registry_pid=pid, env=no_builder, profile=profile
    )
    lock = read_lock(manifest_path.parent / "imagectl.lock")
    assert lock is not None
    rebased = sum(1 for r in lock.images.values() if r.version == "1.0.1")
    assert rebased == count, f"{rebased} of {count} rebased"
    producer = producer_only(seeded, registry.host, upstream, jobs)
    push_upstream_base(registry.host, "upstream/rebase-bench", "1", "bench v3")
    again = imagectl(manifest_path, "apply", *common, registry_pid=pid, env=no_builder)
    lock = read_lock(manifest_path.parent / "imagectl.lock")
    assert lock is not None
    rebased = sum(1 for r in lock.images.values() if r.version == "1.0.2")
    assert rebased == count, f"{rebased} of {count} rebased again"
    noop_all = imagectl(manifest_path, "apply", *common, registry_pid=pid, env=no_builder)
    names = sorted(lock.images)[: max(1, min(sample or count, count))]
    only = [] if len(names) == count else [f for n in names for f in ("--only", n)]
    noop_sample = imagectl(manifest_path, "apply", *common, *only, registry_pid=pid)
    forced = [flag for name in names for flag in ("--force", name)]
    rebuild = imagectl(manifest_path, "apply", *common, *only, *forced, registry_pid=pid)
    return Result(
        count, jobs, rebase, rebuild, len(names), noop_all, noop_sample, producer, git_push, again
    )


if __name__ == "__main__":
    raise SystemExit(main())
