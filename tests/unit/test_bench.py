"""bench/: figures against goals, the table, and which misses fail the run."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from bench import apply_bench, apply_real, record_bench
from bench.fleet import FleetShape
from bench.goals import Figure, failed, table
from bench.run import parse_args
from devenv.registry import RegistryServer
from imagectl.registry import RegistryClient, parse_reference


def test_count_goals_fail_the_run_ratios_only_when_strict_times_never() -> None:
    figures = [
        Figure("requests", 12, "", "count", 10),
        Figure("ratio", 6.0, "x", "ratio", 5.5),
        Figure("10k cold", 3.0, "s", "time", 2.0),
        Figure("met", 1, "", "count", 10),
        Figure("no goal", 9.0, "s", "time"),
    ]
    assert [f.name for f in failed(figures, strict=False)] == ["requests"]
    assert [f.name for f in failed(figures, strict=True)] == ["requests", "ratio"]


def test_table_shows_value_goal_and_whether_it_is_met() -> None:
    text = table(
        "plan",
        [Figure("cold: 10k images, CPU", 3.1, "s", "time", 2.0), Figure("reqs", 11, "", "count")],
    )
    assert "### plan" in text
    assert "| cold: 10k images, CPU | 3.10 s | ≤ 2.00 s | time | **MISSED** |" in text
    assert "| reqs | 11 | - | count | - |" in text


def test_unknown_scenarios_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["plan", "startup"]).scenarios == ["plan", "startup"]
    assert parse_args([]).scenarios == []
    with pytest.raises(SystemExit) as info:
        parse_args(["bogus"])
    assert info.value.code == 2
    assert (
        "unknown scenario 'bogus'; choose from: apply, apply-real, client, plan, rebase, record, "
        "startup" in capsys.readouterr().err
    )


def test_record_scenario_compacts_what_it_records(tmp_path: Path) -> None:
    figures = {f.name: f for f in record_bench.measure(tmp_path, runs=1, images=30)}
    assert figures["record 30 images: total, wall"].value > 0
    assert figures["record 30 images: total, wall"].goal == record_bench.GOAL_TOTAL
    own = figures["imagectl's own cost: CPU of record and compaction"]
    assert own.goal == record_bench.GOAL_CPU
    assert not (tmp_path / ".imagectl" / "imagectl.lock.journal").exists()  # compacted


def test_apply_scenario_builds_every_image_through_the_stub(tmp_path: Path) -> None:
    """A real registry, a real in-process apply; `measure` fails unless all 20 are built."""
    figures = apply_bench.measure(tmp_path, 1, FleetShape(families=1, bases=1))
    assert figures[0].name == "apply: apply 20 images, --jobs 1, wall"
    assert 0 < figures[1].value < figures[0].value  # the stub's pushes are part of the apply
    assert figures[2].name == "apply: the same pushes alone, in a loop" and figures[2].value > 0
    by_name = {f.name: f for f in figures}
    plain = by_name["apply: imagectl's registry requests per image"]
    guarded = by_name["--guard-races: imagectl's registry requests per image"]
    assert plain.value == 2 and plain.met  # the version-tag check and verify's GET
    assert guarded.value == 6 and guarded.goal is None
    assert by_name["apply: imagectl's own overhead per image"].goal == (
        apply_bench.GOAL_PER_IMAGE_MS
    )
    trips = by_name["apply: imagectl's own overhead per image, in round trips of the stub"]
    assert trips.value > 0 and trips.kind == "ratio" and trips.goal is None


def test_apply_overhead_is_the_apply_beyond_the_builds_alone() -> None:
    stub = apply_bench.StubBuilder(cast(RegistryClient, None))
    stub.seconds, stub.requests = 1.5, 40  # inside the apply: slowed by imagectl's work beside
    run = apply_bench.Run(
        built=10,
        wall=2.0,
        cpu=0.5,
        requests=30,
        tag_puts=10,
        stub=stub,
        alone=1.0,
        alone_requests=40,  # 25 ms per request of the pushes alone
    )
    assert run.own_ms == pytest.approx(100.0)  # (2.0 s - 1.0 s alone) / 10 images
    assert run.own_round_trips == pytest.approx(4.0)
    assert run.own_requests == 2.0  # beyond the tag PUTs


def test_apply_real_overhead_is_the_wall_difference_per_image() -> None:
    sides = apply_real.Sides(
        30,
        script=18.0,
        imagectl={"unclaimed": 20.1, "claimed": 19.5},
        noop={"unclaimed": 1.0, "claimed": 1.0},
        probes=0.2,
    )
    figures = {f.name: f for f in sides.figures()}
    assert figures["plain script: build + push of 30 images, wall"].value == 18.0
    assert figures["unclaimed: overhead per image at 30 images"].value == pytest.approx(70.0)
    assert figures["unclaimed: overhead per image beyond the fixed cost"].value == pytest.approx(
        30.0
    )
    unclaimed = figures["unclaimed: imagectl's own overhead per image at 2,000 images"]
    claimed = figures["claimed: imagectl's own overhead per image at 2,000 images"]
    assert unclaimed.value == pytest.approx(30.6) and unclaimed.unit == "ms"  # 1.2 s / 2,000
    assert unclaimed.goal == apply_real.GOAL_PER_IMAGE_MS and unclaimed.met is False
    assert claimed.value == pytest.approx(10.6) and claimed.met
    assert not failed(list(figures.values()), strict=True)  # a time goal never fails the run


def test_apply_real_builds_the_same_images_and_tags_both_ways(
    tmp_path: Path, dockerd: str, builder_registry: RegistryServer
) -> None:
    """Real docker, a real registry: both sides push every image under every tag."""
    sides = apply_real.compare(tmp_path, builder_registry, images=2, runs=1)
    assert set(sides.imagectl) == {"unclaimed", "claimed"} and sides.script > 0
    assert all(0 < sides.noop[mode] < sides.imagectl[mode] for mode in sides.imagectl)
    assert 0 < sides.probes < sides.noop["claimed"]
    script = (tmp_path / "script-0.sh").read_text()
    assert script.count(" build ") == 2 and script.count("push --all-tags") == 2
    assert "--network host" in script and "BASE_IMAGE=" in script and "@sha256:" in script
    host = builder_registry.host
    with RegistryClient(insecure_registries=[host]) as client:
        for side in ("script-0", "unclaimed-0", "claimed-0"):
            for tag in ("1.0.0", "1.0", "1"):
                ref = parse_reference(f"{host}/{side}/img001:{tag}")
                assert client.head_manifest(ref) is not None, ref
    apply_real.remove_local_images(host)


def test_client_scenario_reports_cpu_per_request_and_the_ratio_to_bare_httpx() -> None:
    from bench import requests_cpu

    def heavy() -> int:
        return sum(range(20_000))

    def light() -> int:
        return sum(range(5_000))

    figures = {f.name: f for f in requests_cpu._figures({"HEAD manifest": (heavy, light)}, 1, 40)}
    assert len(figures) == 6  # 1 and 8 threads: imagectl, bare httpx, their ratio
    for label in ("1 thread", "8 threads"):
        ours = figures[f"HEAD manifest, {label}: imagectl CPU/request"]
        floor = figures[f"HEAD manifest, {label}: bare httpx CPU/request"]
        ratio = figures[f"HEAD manifest, {label}: imagectl / httpx"]
        assert ours.unit == floor.unit == "µs" and ratio.kind == "ratio" and ratio.goal == 2.0
        assert ratio.value == pytest.approx(ours.value / floor.value)
        assert ratio.value > 1.5  # four times the work costs more CPU
