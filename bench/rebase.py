"""Benchmark rebase against rebuild: a family of COPY-only images after a base update.

1. Publish an upstream base (busybox FROM scratch) and write a family of N images,
   each ``FROM ${BASE_IMAGE}`` + ``COPY`` of its own file, with ``update: auto``.
2. Build image 0 for real with docker; publish the other N-1 as that image with
   their own labels (blob mounts, a config per image) and record them in the lock,
   as an apply of N builds would have (building them all takes minutes).
3. Re-publish the upstream base. Time ``imagectl apply`` of the whole family with
   ``IMAGECTL_DOCKER`` naming no executable: any builder invocation would fail it,
   so success proves 0 builder invocations.
4. Time ``imagectl apply --force`` of a sample of K images (docker builds, same
   ``--jobs``) and extrapolate the rebuild of N (``--sample N`` measures it all).

Usage: python -m bench.rebase [--images 500] [--sample 20] [--jobs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devenv.dockerd import ensure_dockerd
from devenv.registry import start_registry
from devenv.upstream import push_upstream_base
from imagectl.labels import build_labels
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, read_lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.pipeline import compute_plan
from imagectl.plan.model import Action, PlanOptions
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC).replace(microsecond=0)
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


def imagectl(
    manifest: Path, *args: str, env: dict[str, str] | None = None, profile: Path | None = None
) -> float:
    """Wall time of one real CLI run (it must succeed); `profile`: cProfile it and count
    its registry requests by kind (into that directory)."""
    argv = [str(REPO / ".venv" / "bin" / "imagectl"), "-f", str(manifest), *args]
    if profile is not None:
        argv = [sys.executable, "-m", "bench.rebase", "--child", str(profile), *argv[1:]]
    start = time.perf_counter()
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def clone_as(
    client: RegistryClient, model: Action, model_digest: str, action: Action, base_digest: str
) -> str:
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
    return clone.digest


def seed(manifest_path: Path, host: str) -> int:
    """Build image 0 for real, publish the others as clones, record them all; N."""
    manifest = load_manifest(manifest_path)
    with RegistryClient(insecure_registries=[host], max_concurrency=16) as client:
        plan, _ = compute_plan(manifest, client, now=NOW, options=PlanOptions())
        first = plan.actions[0]
        imagectl(manifest_path, "apply", "--no-git", "--only", first.image)
        lock = read_lock(manifest_path.parent / "imagectl.lock") or Lock()
        model = lock.images[first.image]
        for action in plan.actions[1:]:
            assert action.base.digest is not None
            digest = clone_as(client, first, model.digest, action, action.base.digest)
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


def child(out: Path, args: list[str]) -> None:
    """Run the CLI in this process under cProfile, counting registry requests by kind."""
    import cProfile

    from imagectl.registry.session import RegistrySession

    counts: Counter[str] = Counter()
    mutex = threading.Lock()
    original = RegistrySession._count_request

    def counting(self: RegistrySession, request: httpx.Request) -> None:
        with mutex:
            counts[request_kind(request)] += 1
        original(self, request)

    RegistrySession._count_request = counting  # type: ignore[method-assign]
    profiles: list[cProfile.Profile] = []
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:  # the workers' time too
        profile = cProfile.Profile()
        with mutex:
            profiles.append(profile)
        profile.runcall(thread_run, self)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    sys.argv = ["imagectl", *args]
    from imagectl.cli import main as cli_main

    profiler = cProfile.Profile()
    code = 0
    try:
        profiler.runcall(cli_main)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        out.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(out / "apply.prof")
        for number, profile in enumerate(profiles):
            profile.dump_stats(out / f"thread{number}.prof")
        (out / "requests.json").write_text(json.dumps(dict(counts.most_common()), indent=1))
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--sample", type=int, default=20, help="images rebuilt for the baseline")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile the rebase apply and count its registry requests (into this directory)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="imagectl-bench-rebase-"))
    try:
        ensure_dockerd(work / "dockerd")
        registry = start_registry(work / "registry")
        try:
            push_upstream_base(registry.host, "upstream/rebase-bench", "1", "bench v1")
            upstream = f"{registry.host}/upstream/rebase-bench:1"
            manifest_path = write_family(work / "family", registry.host, upstream, args.images)
            count = seed(manifest_path, registry.host)
            push_upstream_base(registry.host, "upstream/rebase-bench", "1", "bench v2")
            no_builder = {"IMAGECTL_DOCKER": str(work / "no-docker")}
            jobs = ["--jobs", str(args.jobs), "--no-git"]
            rebase_time = imagectl(
                manifest_path, "apply", *jobs, env=no_builder, profile=args.profile
            )
            lock = read_lock(manifest_path.parent / "imagectl.lock")
            assert lock is not None
            rebased = sum(1 for r in lock.images.values() if r.version == "1.0.1")
            assert rebased == count, f"{rebased} of {count} rebased"
            sample = sorted(lock.images)[: max(1, min(args.sample, count))]
            forced = [flag for name in sample for flag in ("--force", name, "--only", name)]
            rebuild_sample = imagectl(manifest_path, "apply", *jobs, *forced)
        finally:
            registry.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_image = rebuild_sample / len(sample)
    rebuild_all = per_image * count
    print(f"images: {count} COPY-only, --jobs {args.jobs}")
    print(f"rebase of {count} after a base update: {rebase_time:.1f} s, 0 builder invocations")
    print(
        f"rebuild sample: {len(sample)} images in {rebuild_sample:.1f} s "
        f"({per_image:.2f} s/image) -> {count} images ~ {rebuild_all:.1f} s"
        + (" (measured)" if len(sample) == count else " (extrapolated)")
    )
    print(f"rebase is {rebuild_all / rebase_time:.1f}x faster than rebuilding")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
