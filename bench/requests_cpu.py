"""Scenario `client`: imagectl's CPU per registry request against bare httpx.

A real local registry holds one small image (a config blob and its manifest,
pushed once). Then N requests of each kind (HEAD of the manifest, GET of the
manifest, GET of the config blob) are timed in process CPU (`time.process_time`,
every thread of this process; the registry runs in another), through
`RegistryClient` and through a bare `httpx.Client` (the floor: one pooled
connection per thread, no streaming, no limits), on one thread and on 8 threads
sharing one client. Figures: microseconds of CPU per request, and imagectl's
ratio to bare httpx (goal: at most 2x).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.goals import Figure
from devenv.registry import start_registry
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import MANIFEST_ACCEPT, OciManifest, compute_digest

REQUESTS = 2000
THREADS = 8
GOAL_RATIO = 2.0
REPOSITORY = "bench/requests"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

Call = Callable[[], object]


def push_image(client: RegistryClient, host: str) -> tuple[str, str]:
    """Push a config blob and a manifest naming it; returns (manifest URL path, blob path)."""
    ref = parse_reference(f"{host}/{REPOSITORY}:v1")
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    blob = client.put_blob(ref, config)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    manifest = OciManifest.from_bytes(raw, OCI_MANIFEST)
    client.put_manifest(ref, manifest)
    assert manifest.digest == compute_digest(raw)
    return f"/v2/{REPOSITORY}/manifests/v1", f"/v2/{REPOSITORY}/blobs/{blob}"


def cpu_per_call(call: Call, n: int, threads: int) -> float:
    """Process CPU seconds per call of `call`, made `n` times over `threads` threads."""
    for _ in range(20):  # warm: connections open, tokens and caches filled
        call()

    def run(count: int) -> None:
        for _ in range(count):
            call()

    start = time.process_time()
    if threads == 1:
        run(n)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(run, n // threads) for _ in range(threads)]:
                future.result()
    return (time.process_time() - start) / (n // threads * threads)


def calls(host: str, client: RegistryClient, bare: httpx.Client) -> dict[str, tuple[Call, Call]]:
    """Each kind of request: (through imagectl, through bare httpx)."""
    manifest_path, blob_path = push_image(client, host)
    ref = parse_reference(f"{host}/{REPOSITORY}:v1")
    blob = blob_path.rsplit("/", 1)[1]
    accept = {"Accept": MANIFEST_ACCEPT}
    return {
        "HEAD manifest": (
            lambda: client.head_manifest(ref),
            lambda: bare.head(manifest_path, headers=accept),
        ),
        "GET manifest": (
            lambda: client.get_manifest(ref),
            lambda: bare.get(manifest_path, headers=accept),
        ),
        "GET blob": (
            lambda: client.get_blob(ref, blob),
            lambda: bare.get(blob_path, follow_redirects=True),
        ),
    }


def measure(work: Path, runs: int, n: int = REQUESTS) -> list[Figure]:
    """Every figure of the scenario (starts a registry on a free loopback port)."""
    registry = start_registry(work / "registry")
    try:
        with (
            RegistryClient(max_concurrency=THREADS) as client,
            httpx.Client(
                base_url=registry.url,
                limits=httpx.Limits(max_connections=THREADS),
                trust_env=False,
            ) as bare,
        ):
            return _figures(calls(registry.host, client, bare), runs, n)
    finally:
        registry.stop()


def _figures(kinds: dict[str, tuple[Call, Call]], runs: int, n: int) -> list[Figure]:
    figures: list[Figure] = []
    for threads in (1, THREADS):
        label = "1 thread" if threads == 1 else f"{threads} threads"
        for kind, (ours, floor) in kinds.items():
            mine = min(cpu_per_call(ours, n, threads) for _ in range(max(runs, 1)))
            base = min(cpu_per_call(floor, n, threads) for _ in range(max(runs, 1)))
            figures += [
                Figure(f"{kind}, {label}: imagectl CPU/request", mine * 1e6, "µs", "time"),
                Figure(f"{kind}, {label}: bare httpx CPU/request", base * 1e6, "µs", "time"),
                Figure(f"{kind}, {label}: imagectl / httpx", mine / base, "x", "ratio", GOAL_RATIO),
            ]
    return figures
