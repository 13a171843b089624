"""Scenario `apply`: imagectl's own overhead per image of an apply, with a stub builder.

A fleet of 2,000 images (bench/fleet.py) on 10 external bases, in a real local
registry. The bases and the images are pushed without docker: each is a config
blob (with the build's labels) and a manifest without layers. The stub builder's
`build` does nothing and its `push` uploads that config and manifest, as a real
builder's push would (timed apart). imagectl's overhead per image is the wall time
of the in-process apply minus the stub's time, divided by the images: everything
imagectl adds around a build (verify, tags, the lock record, the scheduling).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from bench.fleet import FleetShape, base_repository, write_fleet
from bench.goals import Figure
from devenv.registry import start_registry
from imagectl.apply.engine import ApplyOptions, apply_plan
from imagectl.builders.base import BuildRequest
from imagectl.manifest.loader import load_manifest
from imagectl.pipeline import compute_plan
from imagectl.plan.model import PlanOptions
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest

SHAPE = FleetShape(families=100)
GOAL_PER_IMAGE_MS = 20.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_image(client: RegistryClient, ref: str, labels: dict[str, str]) -> str:
    """Push a layerless image with `labels` under the tag of `ref`; its digest."""
    target = parse_reference(ref)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    raw = json.dumps(config).encode()
    digest = client.push_blob(target, raw)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(raw),
        },
        "layers": [],
    }
    return client.put_manifest(target, OciManifest.from_bytes(json.dumps(manifest).encode()))


class StubBuilder:
    """A builder whose push uploads a layerless image with the request's labels."""

    name = "docker"

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.seconds = 0.0

    def check(self) -> str:
        return "stub"

    def build(self, req: BuildRequest) -> None:
        return None

    def push(self, req: BuildRequest) -> str:
        start = time.perf_counter()
        try:
            return push_image(self.client, req.ref, dict(req.labels))
        finally:
            self.seconds += time.perf_counter() - start


def measure(work: Path, runs: int, shape: FleetShape = SHAPE) -> list[Figure]:
    registry = start_registry(work / "registry")
    try:
        with RegistryClient(insecure_registries=[registry.host], max_concurrency=16) as client:
            for b in range(shape.bases):
                push_image(client, f"{registry.host}/{base_repository(b)}:1", {})
            path = write_fleet(work / "fleet", registry.host, shape)
            manifest = load_manifest(path)
            plan, _ = compute_plan(manifest, client, now=datetime.now(UTC), options=PlanOptions())
            stub = StubBuilder(client)
            options = ApplyOptions(jobs=1, git=False)
            with mock.patch("imagectl.apply.protocol.get_builder", return_value=stub):
                start = time.perf_counter()
                result = apply_plan(manifest, plan, client, options)
                wall = time.perf_counter() - start
    finally:
        registry.stop()
    built = sum(1 for o in result.outcomes.values() if o.state == "built")
    if built != shape.images:
        states = {o.state for o in result.outcomes.values()}
        raise AssertionError(f"{built} of {shape.images} images built (states: {states})")
    own = (wall - stub.seconds) / built * 1000
    return [
        Figure(f"apply {built:,} images (stub builder, --jobs 1), wall", wall, "s", "time"),
        Figure("of which the stub builder's pushes", stub.seconds, "s", "time"),
        Figure("imagectl's own overhead per image", own, "ms", "time", GOAL_PER_IMAGE_MS),
    ]
