"""The registry side of rebase on the reference registry: blob mount/upload, refusal."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.rebase import request_kind
from devenv.registry import RegistryServer
from imagectl.rebase.publish import Rebaser, RebaseRefused, RebaseRequest
from imagectl.rebase.sources import Doc
from imagectl.registry import Reference, RegistryClient, parse_reference
from imagectl.registry.manifests import OciManifest, compute_digest
from tests.fixtures.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, push_image

pytestmark = pytest.mark.integration


def test_the_registry_process_runs_with_gogc_400_unless_the_caller_set_it(
    registry: RegistryServer,
) -> None:
    raw = Path(f"/proc/{registry.process.pid}/environ").read_bytes()
    environ = dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)
    assert environ["GOGC"] == os.environ.get("GOGC", "400")


def test_push_mount_and_has_blob(registry: RegistryServer, repo: str) -> None:
    with RegistryClient(insecure_registries=[registry.host]) as client:
        source = parse_reference(f"{registry.host}/{repo}-src:x")
        target = parse_reference(f"{registry.host}/{repo}-dst:x")
        digest = client.push_blob(source, b"some layer bytes")
        assert client.has_blob(source, digest)
        assert not client.has_blob(target, digest)
        assert client.mount_blob(target, digest, source)
        assert client.has_blob(target, digest)
        assert client.get_blob(target, digest) == b"some layer bytes"


def test_an_image_not_starting_with_its_recorded_base_is_refused(
    registry: RegistryServer, repo: str
) -> None:
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        base_v1 = push_image(http, f"{repo}/base", "1", content="base v1")
        base_v2 = push_image(http, f"{repo}/base", "2", content="base v2")
        old = push_image(http, f"{repo}/app", "1.0.0", content="built elsewhere")
    base = parse_reference(f"{registry.host}/{repo}/base:1")
    request = RebaseRequest(
        repository=parse_reference(f"{registry.host}/{repo}/app:1.0.0"),
        old_digest=old.digest,
        old_base=base.with_digest(base_v1.digest),
        new_base=base.with_digest(base_v2.digest),
        labels={"org.opencontainers.image.version": "1.0.1"},
        annotations={},
        created="2026-12-01T00:00:00Z",
    )
    refused = pytest.raises(RebaseRefused, match="does not start with the layers")
    with RegistryClient(insecure_registries=[registry.host]) as client, refused:
        Rebaser(client).rebase(request)


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests sent, by kind (``GET blob``, ``POST mount``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: Counter[str] = Counter()
        self._mutex = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._mutex:
            self.kinds[request_kind(request)] += 1
        return super().handle_request(request)


def _push(
    client: RegistryClient, ref: Reference, layers: list[bytes], history: int, label: str
) -> str:
    """An image of `layers` (raw bytes stand for tarballs) with `history` entries."""
    descriptors = [
        {"mediaType": OCI_LAYER, "digest": client.push_blob(ref, layer), "size": len(layer)}
        for layer in layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"x": label}},
        "rootfs": {"type": "layers", "diff_ids": [compute_digest(b"d" + x) for x in layers]},
        "history": [{"created_by": f"step {n}"} for n in range(history)],
    }
    raw = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": client.push_blob(ref, raw), "size": len(raw)},
        "layers": descriptors,
    }
    return client.put_manifest(
        ref, OciManifest.from_bytes(json.dumps(manifest).encode(), OCI_MANIFEST)
    )


def test_a_family_reads_its_base_once_and_mounts_only_missing_layers(
    registry: RegistryServer, repo: str
) -> None:
    """Per image: GET manifest, GET config, one mount (the new base layer the old image
    lacks; the shared one is skipped) and the config upload; the bases are read once."""
    shared, old_top, new_top = b"shared base layer", b"base v1 top", b"base v2 top"
    images = 6
    with RegistryClient(insecure_registries=[registry.host]) as setup:
        base = parse_reference(f"{registry.host}/{repo}/base:1")
        v1 = _push(setup, base, [shared, old_top], 2, "v1")
        v2 = _push(setup, base, [shared, new_top], 2, "v2")
        apps = [parse_reference(f"{registry.host}/{repo}/app{n}:1.0.0") for n in range(images)]
        for n, app in enumerate(apps):
            for layer in (shared, old_top):
                assert setup.mount_blob(app, compute_digest(layer), base)
            own = f"app {n} files".encode()
            _push(setup, app, [shared, old_top, own], 3, f"app{n}")
        olds = [setup.head_manifest(app) for app in apps]

    def request(n: int) -> RebaseRequest:
        old = olds[n]
        assert old is not None
        return RebaseRequest(
            repository=apps[n],
            old_digest=old.digest,
            old_base=base.with_digest(v1),
            new_base=base.with_digest(v2),
            labels={"org.opencontainers.image.version": "1.0.1"},
            annotations={},
            created="2026-12-01T00:00:00Z",
        )

    transport = CountingTransport()
    with RegistryClient(insecure_registries=[registry.host], transport=transport) as client:
        rebaser = Rebaser(client)
        with ThreadPoolExecutor(4) as pool:
            rebased = list(pool.map(lambda n: rebaser.rebase(request(n)), range(images)))
        for app, manifest in zip(apps, rebased, strict=True):
            client.put_manifest(app.with_tag("1.0.1"), manifest)
            layers = [d["digest"] for d in manifest.data["layers"]]
            assert layers[:2] == [compute_digest(shared), compute_digest(new_top)]
            config = json.loads(client.get_blob(app, manifest.data["config"]["digest"]))
            assert len(config["history"]) == 3 and config["config"]["Labels"]["x"].startswith("app")
    kinds = dict(transport.kinds)
    puts = kinds.pop("PUT manifest:tag")
    assert puts == images
    kinds["GET blob"] -= images  # the checks' own config reads above
    # the reference registry takes no single-POST upload: the first try says so (202;
    # workers already under way try too), then every upload is a bare POST + PUT
    tries = kinds.pop("POST upload+digest")
    assert 1 <= tries <= 4 and kinds.pop("POST upload", 0) == images - tries
    # the bases: one manifest and one config each, whatever the workers' timing
    assert kinds == {
        "GET manifest@digest": images + 2,
        "GET blob": images + 2,
        "POST mount": images,
        "PUT upload+digest": images,
    }


def test_a_small_blob_upload_is_one_request_where_the_registry_allows_it(
    registry: RegistryServer, repo: str
) -> None:
    transport = CountingTransport()
    with RegistryClient(insecure_registries=[registry.host], transport=transport) as client:
        ref = parse_reference(f"{registry.host}/{repo}:x")
        first = client.push_small_blob(ref, b'{"a":1}')
        second = client.push_small_blob(ref, b'{"a":2}')
        assert client.get_blob(ref, first) == b'{"a":1}'
        assert client.get_blob(ref, second) == b'{"a":2}'
    # the reference registry answers 202: POST with the bytes, PUT; then POST, PUT
    assert transport.kinds == Counter(
        {"POST upload+digest": 1, "PUT upload+digest": 2, "POST upload": 1, "GET blob": 2}
    )


def test_a_rebase_that_knows_the_old_documents_reads_none_and_makes_the_same_image(
    registry: RegistryServer, repo: str
) -> None:
    """`RebaseRequest.known` (what the last publish kept): no GET of the old manifest or
    config, the very same bytes as a rebase that reads them; a wrong document is a miss."""
    with RegistryClient(insecure_registries=[registry.host]) as setup:
        base = parse_reference(f"{registry.host}/{repo}/base:1")
        v1 = _push(setup, base, [b"base v1"], 1, "v1")
        v2 = _push(setup, base, [b"base v2"], 1, "v2")
        app = parse_reference(f"{registry.host}/{repo}/app:1.0.0")
        assert setup.mount_blob(app, compute_digest(b"base v1"), base)
        old = _push(setup, app, [b"base v1", b"app files"], 2, "app")
        kept_manifest = setup.get_manifest(app.with_digest(old))
        config_digest = kept_manifest.data["config"]["digest"]
        kept = {
            old: Doc(kept_manifest.media_type, kept_manifest.raw),
            config_digest: Doc("", setup.get_blob(app, config_digest)),
        }

    def request(known: dict[str, Doc]) -> RebaseRequest:
        return RebaseRequest(
            repository=app,
            old_digest=old,
            old_base=base.with_digest(v1),
            new_base=base.with_digest(v2),
            labels={"org.opencontainers.image.version": "1.0.1"},
            annotations={},
            created="2026-12-01T00:00:00Z",
            known=known,
        )

    def rebased(known: dict[str, Doc]) -> tuple[OciManifest, dict[str, Doc], Counter[str]]:
        transport = CountingTransport()
        with RegistryClient(insecure_registries=[registry.host], transport=transport) as client:
            manifest, made = Rebaser(client).rebase_docs(request(known))
        return manifest, made, transport.kinds

    plain, made, read = rebased({})
    # the app's, the old base's and the new base's
    assert read["GET manifest@digest"] == 3 and read["GET blob"] == 3
    warm, _, fewer = rebased(kept)
    assert warm.raw == plain.raw
    assert fewer["GET manifest@digest"] == 2 and fewer["GET blob"] == 2  # the bases' only
    config = made[plain.data["config"]["digest"]]
    assert made == {
        plain.digest: Doc(plain.media_type, plain.raw),
        compute_digest(config.data): config,
    }
    wrong = {old: Doc(OCI_MANIFEST, b"{}"), config_digest: Doc("", b"{}")}
    again, _, asked = rebased(wrong)
    assert again.raw == plain.raw
    assert asked["GET manifest@digest"] == 3 and asked["GET blob"] == 3
