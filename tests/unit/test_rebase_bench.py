"""bench/rebase.py: the fair extrapolation of the rebuild, the request kinds, the cleanup."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx

from bench.rebase import Result, Run, remove_images, request_kind, rest_split


def _run(wall: float, requests: int = 0) -> Run:
    return Run(wall, 1.0, 1.0, Counter({"GET blob": requests}), 0.0)


def test_the_sample_loses_its_fixed_cost_before_it_is_scaled() -> None:
    # 10 of 100 rebuilt in 14 s, 4 s of which any apply of those 10 costs (a no-op);
    # a no-op apply of all 100 costs 6 s: 6 + (14 - 4) * 100 / 10 = 106 s, not 140 s
    result = Result(100, 8, _run(10.0), _run(14.0), 10, _run(6.0), _run(4.0), (2.0, 500))
    assert result.rebuild_all == 106.0
    assert result.ratio == 10.6
    assert "rebuild of 100: 106.0 s (extrapolated from 10)" in "\n".join(result.lines())


def test_a_full_rebuild_is_measured_not_extrapolated() -> None:
    result = Result(100, 8, _run(20.0, 900), _run(300.0), 100, _run(6.0, 2), _run(6.0), (2, 5))
    assert result.rebuild_all == 300.0
    text = "\n".join(result.lines())
    assert "rebuild of 100: 300.0 s (measured)" in text
    assert "(9.0/image beyond a no-op apply's 2)" in text
    assert "rebase is 15.0x faster" in text


def test_the_rebase_wall_is_split_and_its_cpu_floor_shown() -> None:
    rebase = Run(20.0, 9.0, 15.0, Counter(), 0.0, {"jobs": 15.5, "output": 1.5})
    result = Result(100, 8, rebase, _run(300.0), 100, _run(6.0), _run(6.0), (2, 5))
    text = "\n".join(result.lines())
    assert "wall: image jobs 15.5 s, console output of the main thread" in text
    assert "tables) 1.5 s, the rest (start, plan, claims, lock, git) 3.0 s" in text
    assert "CPU floor on " in text


def test_request_kinds() -> None:
    base = "http://r/v2/acme/app"
    digest = "sha256:" + "a" * 64
    cases = {
        ("HEAD", f"{base}/manifests/1.0"): "HEAD manifest:tag",
        ("GET", f"{base}/manifests/{digest}"): "GET manifest@digest",
        ("GET", f"{base}/blobs/{digest}"): "GET blob",
        ("POST", f"{base}/blobs/uploads/?mount={digest}&from=x"): "POST mount",
        ("POST", f"{base}/blobs/uploads/?digest={digest}"): "POST upload+digest",
        ("POST", f"{base}/blobs/uploads/"): "POST upload",
        ("PUT", f"{base}/blobs/uploads/u1?digest={digest}"): "PUT upload+digest",
    }
    for (method, url), kind in cases.items():
        assert request_kind(httpx.Request(method, url)) == kind


def test_the_rest_of_the_rebase_wall_is_split_by_phase() -> None:
    phases = {"jobs": 10.0, "output": 0.5, "plan": 1.0, "prepare": 0.5, "run": 11.0, "main": 13.5}
    # start-up 0.5 (wall beyond main), after the jobs 1.0 (run without the jobs), other
    # 0.5 (main without plan, prepare, run and output)
    assert rest_split(14.0, phases) == (
        "start-up 0.5 s, plan 1.0 s, claims and checks 0.5 s, after the jobs (lock, git) 1.0 s, "
        "other 0.5 s"
    )
    rebase = Run(14.0, 9.0, 15.0, Counter(), 0.0, phases)
    result = Result(100, 8, rebase, _run(300.0), 100, _run(6.0), _run(6.0), (2, 5))
    assert f"  the rest: {rest_split(14.0, phases)}" in result.lines()


def test_the_next_rebase_is_reported_with_its_own_ratio() -> None:
    again = Run(5.0, 1.0, 1.0, Counter({"PUT manifest:tag": 300}), 0.0)
    result = Result(100, 8, _run(10.0), _run(300.0), 100, _run(6.0), _run(6.0), (2, 5), True, again)
    lines = result.lines()
    assert "rebase is 30.0x faster than rebuilding" in lines
    assert lines[-1] == "the next rebase is 60.0x faster than rebuilding"
    assert "5.0 s wall" in lines[-2] and "PUT manifest:tag 3.00" in lines[-2]
    assert (
        Result(100, 8, _run(10.0), _run(300.0), 100, _run(6.0), _run(6.0), (2, 5)).lines()[-1]
        == "rebase is 30.0x faster than rebuilding"
    )


def test_the_images_a_run_built_are_removed_from_the_daemon_and_no_others(tmp_path: Path) -> None:
    """Left in the daemon, a run's images would slow the next run's rebuild (its baseline)."""
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$2" = ls ]; then\n'
        "  printf '127.0.0.1:5000/rebase-bench/img0000:1.0.1\\n"
        "127.0.0.1:5000/rebase-bench/img0001:1.0\\n127.0.0.1:5001/other/app:1\\nbusybox:latest\\n'\n"
        "fi\n"
    )
    docker.chmod(0o755)
    remove_images("127.0.0.1:5000", str(docker))
    lines = calls.read_text().splitlines()
    assert lines[1:] == [
        "image rm --force 127.0.0.1:5000/rebase-bench/img0000:1.0.1 "
        "127.0.0.1:5000/rebase-bench/img0001:1.0"
    ]
