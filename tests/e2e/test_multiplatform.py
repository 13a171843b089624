"""Multi-platform images end to end: real buildah, a real registry, a two-platform base.

The upstream base is an OCI index of a linux/amd64 and a linux/arm64 image, each the
static busybox of its architecture (Debian's busybox-static:arm64, fetched by
scripts/fetch-arm64-busybox.sh). Test images use COPY only: no emulation is needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devenv.registry import RegistryServer
from devenv.upstream import arm64_busybox_path
from tests.e2e.family import make_family, upstream_publisher
from tests.e2e.test_reconcile import GitOps
from tests.fixtures.builders import manifest_digest, registry_get

pytestmark = pytest.mark.e2e

BOTH = ("linux/amd64", "linux/arm64")
COPY_ONLY = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY {name}.txt /etc/acme/{name}.txt\n"


@pytest.fixture
def multi_upstream(
    builder_registry: RegistryServer, buildah_root: Path
) -> Callable[[str], tuple[str, str]]:
    """A fresh two-platform upstream index: marker -> (reference by tag, digest)."""
    if not os.access(arm64_busybox_path(), os.X_OK):
        pytest.fail(
            f"no arm64 busybox at {arm64_busybox_path()}: run scripts/fetch-arm64-busybox.sh"
        )
    return upstream_publisher(builder_registry.host, "multi", tool="buildah", platforms=BOTH)


def make_repo(
    tmp_path: Path,
    host: str,
    upstream_ref: str,
    images: dict[str, str],
    *,
    platforms: tuple[str, ...] = BOTH,
    builder: str = "buildah",
    update: str = "build",
) -> GitOps:
    defaults = {"builder": builder, "network": "host", "update": update}
    defaults["platforms"] = f"[{', '.join(platforms)}]"
    family = {name: (base, COPY_ONLY) for name, base in images.items()}
    return make_family(tmp_path / "gitops", host, upstream_ref, family, defaults)


Family = Callable[..., GitOps]


@pytest.fixture
def family(
    tmp_path: Path,
    builder_registry: RegistryServer,
    multi_upstream: Callable[[str], tuple[str, str]],
) -> Family:
    """Factory: a git-ops family (make_repo's keywords) on the upstream index "vendor 1"."""
    ref, _ = multi_upstream("vendor 1")

    def make(images: dict[str, str], **kw: Any) -> GitOps:
        return make_repo(tmp_path, builder_registry.host, ref, images, **kw)

    return make


def index_of(repo: GitOps, image: str, tag: str) -> dict[str, str]:
    """Platform -> image manifest digest of the index under `tag`."""
    index = json.loads(registry_get(repo.host, f"{repo.namespace}/{image}/manifests/{tag}"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }


def labels_of(repo: GitOps, image: str, digest: str) -> dict[str, str]:
    return repo.labels(image, digest)


def config_of(repo: GitOps, image: str, digest: str) -> dict[str, object]:
    manifest = json.loads(registry_get(repo.host, f"{repo.namespace}/{image}/manifests/{digest}"))
    blob = registry_get(repo.host, f"{repo.namespace}/{image}/blobs/{manifest['config']['digest']}")
    return dict(json.loads(blob))


def test_two_platform_family_is_published_as_indexes_and_tracks_each_platform(
    tmp_path: Path,
    builder_registry: RegistryServer,
    multi_upstream: Callable[[str], tuple[str, str]],
) -> None:
    ref, upstream_index = multi_upstream("vendor 1")
    upstream = json.loads(
        registry_get(builder_registry.host, f"{ref.split('/', 1)[1].replace(':', '/manifests/')}")
    )
    base_entries = {m["platform"]["architecture"]: m["digest"] for m in upstream["manifests"]}
    repo = make_repo(tmp_path, builder_registry.host, ref, {"base": "upstream", "app": "base"})

    repo.ok("apply")
    lock = repo.lock()
    images = lock["images"]
    assert isinstance(images, dict)
    for name in ("base", "app"):
        index_digest = repo.digest(name, "1.0.0")
        assert images[name]["digest"] == index_digest  # the immutable tag names the index
        assert repo.digest(name, "1.0") == index_digest  # floating tags moved by index PUT
        per_platform = index_of(repo, name, "1.0.0")
        assert sorted(per_platform) == list(BOTH)
        for platform, digest in per_platform.items():
            config = config_of(repo, name, digest)
            assert config["architecture"] == platform.split("/")[1]
            labels = labels_of(repo, name, digest)  # every platform carries the labels
            assert labels["org.opencontainers.image.version"] == "1.0.0"
            assert labels["dev.imagectl.inputs"] == images[name]["inputs"]
    # each platform was built on that platform's entry of the base index, recorded per platform
    assert images["base"]["base"]["digest"] == upstream_index
    assert images["base"]["base"]["platforms"] == {
        "linux/amd64": base_entries["amd64"],
        "linux/arm64": base_entries["arm64"],
    }
    app_layers = {}
    for platform, digest in index_of(repo, "app", "1.0.0").items():
        manifest = json.loads(registry_get(repo.host, f"{repo.namespace}/app/manifests/{digest}"))
        app_layers[platform] = manifest["layers"][0]["digest"]
    assert app_layers["linux/amd64"] != app_layers["linux/arm64"]  # each its own busybox

    assert repo.plan()["actions"] == []
    assert json.loads(repo.ok("plan", "--refresh", "--json"))["actions"] == []
    status = json.loads(repo.ok("status", "--json"))
    assert status, "status reads the indexes"
    repo.ok("prune")  # reads every version's labels through the index

    # the vendor re-publishes both platforms: stale, and the reason names each platform
    multi_upstream("vendor 2")
    actions = {a["image"]: a for a in repo.plan()["actions"]}
    assert actions["base"]["reasons"] == ["base-updated"]
    details = actions["base"]["details"]
    assert [d.split()[1] for d in details] == list(BOTH)
    assert actions["app"]["reasons"] == ["base-rebuilt"]


def test_base_lacking_a_platform_is_refused_at_plan_time(family: Family) -> None:
    repo = family({"base": "upstream"}, platforms=("linux/arm64", "linux/s390x"))
    result = repo.run("plan")
    assert result.returncode == 1
    assert "platform linux/s390x asked for" in result.stderr + result.stdout
    assert "has images for linux/amd64, linux/arm64" in result.stderr + result.stdout


def test_an_index_without_amd64_builds_and_reads(family: Family) -> None:
    repo = family({"base": "upstream", "app": "base"}, platforms=("linux/arm64",))
    repo.ok("apply")
    digest = repo.digest("app", "1.0.0")
    assert config_of(repo, "app", digest)["architecture"] == "arm64"
    assert repo.plan()["actions"] == []
    assert json.loads(repo.ok("plan", "--refresh", "--json"))["actions"] == []


def test_docker_without_a_multi_platform_driver_refuses_at_plan_time(
    family: Family, dockerd: str
) -> None:
    repo = family({"base": "upstream"}, builder="docker")
    result = repo.run("apply")
    out = result.stderr + result.stdout
    if "docker-container" not in out and result.returncode == 0:
        pytest.skip("this docker has a multi-platform buildx driver")
    assert result.returncode == 1, out
    assert "docker buildx create --driver docker-container --use" in out
    assert "imagectl.yaml:" in out
    # nothing was built or pushed: the registry has no such repository
    with pytest.raises(httpx.HTTPStatusError):
        manifest_digest(repo.host, f"{repo.namespace}/base", "1.0.0")


def test_rebase_of_an_index_rebases_every_platform(
    tmp_path: Path,
    builder_registry: RegistryServer,
    multi_upstream: Callable[[str], tuple[str, str]],
) -> None:
    ref, _ = multi_upstream("vendor 1")
    images = {"base": "upstream", "app": "base"}
    repo = make_repo(tmp_path, builder_registry.host, ref, images, update="auto")
    repo.ok("apply")
    old = index_of(repo, "app", "1.0.0")

    _, new_upstream = multi_upstream("vendor 2")
    plan = repo.plan()["actions"]
    assert [a["method"] for a in plan] == ["rebase", "rebase"]  # type: ignore[index]
    repo.ok("apply")
    logs = sorted((repo.root / ".imagectl" / "logs").glob("*/app.log"))
    assert "imagectl: rebased" in logs[-1].read_text()
    new = index_of(repo, "app", "1.0.1")
    assert sorted(new) == list(BOTH)
    for platform in BOTH:
        old_manifest = json.loads(
            registry_get(repo.host, f"{repo.namespace}/app/manifests/{old[platform]}")
        )
        new_manifest = json.loads(
            registry_get(repo.host, f"{repo.namespace}/app/manifests/{new[platform]}")
        )
        assert new_manifest["layers"][-1] == old_manifest["layers"][-1]  # own layer kept
        assert new_manifest["layers"][0] != old_manifest["layers"][0]  # the new busybox base
        config = config_of(repo, "app", new[platform])
        assert config["architecture"] == platform.split("/")[1]
        labels = labels_of(repo, "app", new[platform])
        assert labels["org.opencontainers.image.version"] == "1.0.1"
    lock = repo.lock()["images"]
    assert isinstance(lock, dict)
    assert lock["base"]["base"]["digest"] == new_upstream
    assert repo.plan()["actions"] == []
