"""Scenario `apply`: imagectl's own overhead per image of an apply, with a stub builder.

A fleet of 2,000 images (bench/fleet.py) on 10 external bases, in a real local
registry. The bases and the images are pushed without docker: each is a config
blob (with the build's labels) and a manifest without layers. The stub builder's
`build` does nothing and its `push` uploads that config and manifest, as a real
builder's push would (timed apart). imagectl's overhead per image is the wall time
of the in-process apply minus the wall time of the same pushes alone (replayed in a
loop right after, into other repositories of the same registry: the builds with
no imagectl around them), divided by the images: everything imagectl adds around
a build (verify, tags, the lock record, the scheduling), including what its work
beside the next build (an image's steps run off the build slot) slows the builds
down by. That figure is also given in units of one request of the builds-alone
push (its wall time over its requests), which a busy machine moves much less: the
stub's round trips and imagectl's slow down together. The stub's own time inside
the apply is shown too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from bench.fleet import FleetShape, base_repository, write_fleet
from bench.goals import Figure
from devenv.registry import start_registry
from imagectl import service
from imagectl.apply.engine import ApplyOptions, apply_plan
from imagectl.builders.base import BuildRequest
from imagectl.manifest.loader import load_manifest
from imagectl.plan.model import PlanOptions
from imagectl.registry import RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest, compute_digest

SHAPE = FleetShape(families=100)
GOAL_PER_IMAGE_MS = 20.0
GOAL_REQUESTS = 2.0  # beyond the builder's push and the tag PUTs
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def config_blob(labels: dict[str, str]) -> bytes:
    """The config of a layerless image with `labels`."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return json.dumps(config).encode()


def push_image(client: RegistryClient, ref: str, labels: dict[str, str]) -> str:
    """Push a layerless image with `labels` under the tag of `ref`; its digest."""
    target = parse_reference(ref)
    raw = config_blob(labels)
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
    """A builder whose push uploads a layerless image with the request's labels.

    It reports the image id (config digest) of its build, as docker and buildah do
    (`--iidfile`), and times its pushes apart: wall, this thread's CPU, requests. Its
    client is its own, as a builder's is: imagectl's requests (some are sent from
    background threads while the stub pushes) are counted on imagectl's client only.
    """

    name = "docker"

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.seconds = 0.0
        self.cpu = 0.0
        self.requests = 0
        self.pushed: list[tuple[str, dict[str, str]]] = []  # (ref, labels), in push order

    def check(self) -> str:
        return "stub"

    def build(self, req: BuildRequest) -> None:
        return None

    def image_id(self, req: BuildRequest) -> str:
        """The config digest of the build, as docker's and buildah's `--iidfile` say."""
        return compute_digest(config_blob(dict(req.labels)))

    def push(self, req: BuildRequest) -> str:
        start, cpu, sent = time.perf_counter(), time.thread_time(), self.client.request_count
        self.pushed.append((req.ref, dict(req.labels)))
        try:
            return push_image(self.client, req.ref, dict(req.labels))
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu += time.thread_time() - cpu
            self.requests += self.client.request_count - sent


@dataclass(frozen=True)
class Run:
    """One in-process apply of the fleet, and the stub builder's share of it."""

    built: int
    wall: float
    cpu: float
    requests: int  # on imagectl's client (the stub has its own)
    tag_puts: int  # one manifest PUT per floating tag moved: the tag move itself
    stub: StubBuilder
    alone: float  # wall seconds of the same pushes replayed in a loop, nothing else
    alone_requests: int

    @property
    def own_ms(self) -> float:
        """imagectl's wall time per image: the apply minus the builds alone."""
        return (self.wall - self.alone) / self.built * 1000

    @property
    def own_round_trips(self) -> float:
        """The wall overhead in units of one request of the builds-alone push (their wall
        time over their requests): a figure a busy machine moves much less than ms."""
        return self.own_ms / (self.alone / self.alone_requests * 1000)

    @property
    def own_cpu_ms(self) -> float:
        return (self.cpu - self.stub.cpu) / self.built * 1000

    @property
    def own_requests(self) -> float:
        """Beyond the builder's push and the tag PUTs, as tests/reliability/test_requests.py."""
        return (self.requests - self.tag_puts) / self.built


def apply_once(work: Path, shape: FleetShape, guarded: bool) -> Run:
    """Apply a fresh fleet in a fresh registry; `guarded`: as under --guard-races."""
    registry = start_registry(work / "registry")
    try:
        with (
            RegistryClient(insecure_registries=[registry.host], max_concurrency=16) as client,
            RegistryClient(insecure_registries=[registry.host]) as builder_client,
        ):
            for b in range(shape.bases):
                push_image(client, f"{registry.host}/{base_repository(b)}:1", {})
            path = write_fleet(work / "fleet", registry.host, shape)
            manifest = load_manifest(path)
            plan = service.plan(manifest, client, now=datetime.now(UTC), options=PlanOptions()).plan
            stub = StubBuilder(builder_client)
            options = ApplyOptions(jobs=1, git=False, guard_races=guarded)
            with mock.patch("imagectl.apply.protocol.get_builder", return_value=stub):
                start, cpu, sent = time.perf_counter(), time.process_time(), client.request_count
                result = apply_plan(manifest, plan, client, options)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                requests = client.request_count - sent
            alone, alone_requests = builds_alone(builder_client, stub.pushed)
    finally:
        registry.stop()
    built = sum(1 for o in result.outcomes.values() if o.state == "built")
    if built != shape.images:
        states = {o.state for o in result.outcomes.values()}
        raise AssertionError(f"{built} of {shape.images} images built (states: {states})")
    tag_puts = sum(len(o.tags_moved) for o in result.outcomes.values())
    return Run(built, wall, cpu, requests, tag_puts, stub, alone, alone_requests)


def builds_alone(
    client: RegistryClient, pushed: list[tuple[str, dict[str, str]]]
) -> tuple[float, int]:
    """Replay the stub's pushes in a loop, each into a repository of its own under
    `alone/` (nothing there yet: the same uploads): (wall seconds, requests)."""
    sent, start = client.request_count, time.perf_counter()
    for ref, labels in pushed:
        target = parse_reference(ref)
        push_image(client, f"{target.registry}/alone/{target.repository}:{target.tag}", labels)
    return time.perf_counter() - start, client.request_count - sent


def measure(work: Path, runs: int, shape: FleetShape = SHAPE) -> list[Figure]:
    figures: list[Figure] = []
    for guarded in (False, True):
        mode = "--guard-races" if guarded else "apply"
        best = min(
            (apply_once(work / f"{mode.strip('-')}-{n}", shape, guarded) for n in range(runs)),
            key=lambda r: r.own_ms,
        )
        # issue 12 goals 3 and 4 are apply's (with or without --git-push: the same requests);
        # --guard-races adds reads by choice
        requests_goal = None if guarded else GOAL_REQUESTS
        time_goal = None if guarded else GOAL_PER_IMAGE_MS
        figures += [
            Figure(f"{mode}: apply {best.built:,} images, --jobs 1, wall", best.wall, "s", "time"),
            Figure(f"{mode}: of which the stub builder's pushes", best.stub.seconds, "s", "time"),
            Figure(f"{mode}: the same pushes alone, in a loop", best.alone, "s", "time"),
            Figure(
                f"{mode}: imagectl's registry requests per image",
                best.own_requests,
                "",
                "count",
                requests_goal,
            ),
            Figure(f"{mode}: imagectl's CPU per image", best.own_cpu_ms, "ms", "time"),
            Figure(
                f"{mode}: imagectl's own overhead per image, in round trips of the stub",
                best.own_round_trips,
                "x",
                "ratio",
            ),
            Figure(
                f"{mode}: imagectl's own overhead per image",
                best.own_ms,
                "ms",
                "time",
                time_goal,
            ),
        ]
    return figures
