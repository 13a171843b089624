"""Multi-platform planning: per-platform base digests, missing platforms, docker capability."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from imagectl.builders.capability import capability_problems
from imagectl.builders.docker import DockerChoice, DockerMode, DockerProbe
from imagectl.errors import BuildError, PlanError
from imagectl.plan.model import Action, BuiltState, Observed, StaleReason
from imagectl.plan.plan import make_plan
from imagectl.platforms import host_platform
from tests.unit.test_plan import DEBIAN, NOW, image, manifest

BOTH = ("linux/amd64", "linux/arm64")
V1 = {"linux/amd64": "sha256:amd1", "linux/arm64": "sha256:arm1", "linux/s390x": "sha256:s1"}
FLEET = manifest(
    image("base", "debian", "1.0", platforms=BOTH, builder="buildah"),
    image("app", "base", "2.0", platforms=BOTH, builder="buildah"),
)


def observed(platforms: dict[str, str], index: str, recorded: dict[str, str]) -> Observed:
    built = BuiltState(
        version="1.0.0",
        digest="sha256:base100",
        base_ref=DEBIAN,
        base_digest="sha256:index1",
        inputs="in-base",
        built_at=NOW - timedelta(hours=1),
        base_platforms=recorded,
    )
    app = replace(
        built, version="2.0.0", digest="sha256:app", base_ref="x/base:1.0.0", inputs="in-app"
    )
    app = replace(app, base_digest="sha256:base100", base_platforms={})
    return Observed(
        base_digests={"debian": index},
        built={"base": built, "app": app},
        inputs={"base": "in-base", "app": "in-app"},
        base_platforms={"debian": platforms},
    )


def test_recorded_platforms_unchanged_plans_nothing_even_if_the_index_moved() -> None:
    recorded = {"linux/amd64": "sha256:amd1", "linux/arm64": "sha256:arm1"}
    # another platform (s390x) was re-published: the index moved, ours did not
    plan = make_plan(
        FLEET, observed({**V1, "linux/s390x": "sha256:s2"}, "sha256:i2", recorded), NOW
    )
    assert plan.actions == ()


def test_one_platform_moving_makes_it_stale_and_names_the_platform() -> None:
    recorded = {"linux/amd64": "sha256:amd1", "linux/arm64": "sha256:arm1"}
    moved = {**V1, "linux/arm64": "sha256:arm2"}
    plan = make_plan(FLEET, observed(moved, "sha256:index2", recorded), NOW)
    base = plan.action("base")
    assert isinstance(base, Action)
    assert base.reasons == (StaleReason.BASE_UPDATED,)
    assert base.details == ("base-updated: linux/arm64 sha256:arm1 -> sha256:arm2",)
    assert dict(base.base.platforms) == {"linux/amd64": "sha256:amd1", "linux/arm64": "sha256:arm2"}
    assert base.to_json()["details"] == list(base.details)
    assert Action.from_saved(base.to_saved()) == base
    app = plan.action("app")
    assert app is not None and app.reasons == (StaleReason.BASE_REBUILT,)


def test_a_lock_without_platforms_falls_back_to_the_index_digest() -> None:
    assert make_plan(FLEET, observed(V1, "sha256:index1", {}), NOW).actions == ()
    stale = make_plan(FLEET, observed(V1, "sha256:index2", {}), NOW).action("base")
    assert stale is not None and stale.reasons == (StaleReason.BASE_UPDATED,)


def test_base_lacking_a_platform_is_a_plan_error_naming_it() -> None:
    only_amd = {"linux/amd64": "sha256:amd1"}
    with pytest.raises(
        PlanError,
        match=r"image 'base': platform linux/arm64 asked for, but "
        r"base 'debian' .* has images for linux/amd64",
    ):
        make_plan(FLEET, observed(only_amd, "sha256:index1", {}), NOW)


def test_child_asking_more_platforms_than_its_parent_builds_is_an_error() -> None:
    fleet = manifest(
        image("base", "debian", "1.0", platforms=("linux/amd64",), builder="buildah"),
        image("app", "base", "2.0", platforms=BOTH, builder="buildah"),
    )
    with pytest.raises(PlanError, match="its base image 'base' is built for linux/amd64"):
        make_plan(fleet, observed(V1, "sha256:index1", {}), NOW)


def test_parent_without_platforms_is_the_host_platform() -> None:
    fleet = manifest(
        image("base", "debian", "1.0"),
        image("app", "base", "2.0", platforms=(host_platform(),)),
    )
    make_plan(fleet, observed(V1, "sha256:index1", {}), NOW)


SERVER = {"server_version": "28.2.2", "server_api": "1.41", "server_os": "linux"}


def _choice(driver: str | None, mode: DockerMode = DockerMode.BUILDX) -> DockerChoice:
    probe = DockerProbe(
        "/usr/bin/docker",
        "28.2.2",
        "1.41",
        buildx_version="0.20",
        buildx_driver=driver,
        buildkit_env=True,
        **SERVER,
    )
    return DockerChoice(probe, mode)


def test_docker_without_a_multi_platform_driver_refuses_at_plan_time() -> None:
    images = [
        image("multi", "debian", "1.0", platforms=BOTH),
        image("single", "debian", "1.0", platforms=("linux/arm64",)),
        image("bud", "debian", "1.0", platforms=BOTH, builder="buildah"),
    ]
    problems = capability_problems(images, lambda: _choice("docker"))
    assert len(problems) == 1
    assert problems[0].startswith("imagectl.yaml:1:1: image 'multi': building for several")
    assert "docker buildx create --driver docker-container --use" in problems[0]
    assert "docker-buildx-plugin" in problems[0]
    assert capability_problems(images, lambda: _choice("docker-container")) == []


def test_capability_probe_runs_only_when_needed_and_reports_a_missing_docker() -> None:
    def boom() -> DockerChoice:
        raise BuildError("docker is not installed")

    assert capability_problems([image("one", "debian", "1.0")], boom) == []
    problems = capability_problems([image("m", "debian", "1.0", platforms=BOTH)], boom)
    assert problems == ["imagectl.yaml:1:1: image 'm': docker is not installed"]
