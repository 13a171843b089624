"""Output helpers: failure reports, plan views in one pass, soft-wrapped messages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from imagectl.apply.steps import OutcomeState, StepEvent, StepName
from imagectl.domain.producers import Producer
from imagectl.output.failures import describe_failure
from imagectl.output.plan_view import github_matrix, plan_table
from imagectl.output.progress import Progress
from imagectl.plan.model import Action, BaseUse, Plan, StaleReason


def test_failure_names_the_image_and_the_log_once() -> None:
    log = Path("/repo/.imagectl/logs/run/core.log")
    error = f"core: docker build failed (exit 1); full log: {log}\nstep 3/5: RUN false\nexit 1"
    failure = describe_failure("core", error, log)
    assert failure.message == "docker build failed (exit 1)\nstep 3/5: RUN false\nexit 1"
    assert failure.log_path == str(log)
    assert failure.headline == "core: docker build failed (exit 1)"
    assert "core" not in failure.message and str(log) not in failure.message


def test_failure_keeps_the_log_path_named_only_in_the_message() -> None:
    failure = describe_failure("api", "api: push failed; full log: /tmp/x/api.log", None)
    assert failure.message == "push failed" and failure.log_path == "/tmp/x/api.log"
    plain = describe_failure("api", "registry refused the push", None)
    assert plain.message == "registry refused the push" and plain.log_path is None
    assert plain.headline == "api: registry refused the push"


class CountingTuple(tuple[Action, ...]):
    """A tuple that counts how often it is iterated (a scan per image would show)."""

    scans = 0

    def __iter__(self) -> Iterator[Action]:
        CountingTuple.scans += 1
        return super().__iter__()


def chain_plan(size: int) -> Plan:
    actions = []
    for i in range(size):
        parent = (f"img{i - 1}",) if i % 5 else ()
        actions.append(
            Action(
                image=f"img{i}",
                family="f",
                repository=f"r/img{i}",
                reasons=(StaleReason.NEW,),
                from_version=None,
                to_version="1.0.0",
                tags=("1.0.0",),
                held_tags=(),
                depends_on=parent,
                base=BaseUse("b", "b:1", "sha256:b", False),
                inputs="",
                depth=i % 5,
            )
        )
    return Plan(actions=CountingTuple(actions), unchanged=())


def test_plan_views_and_lookups_scan_the_actions_a_constant_number_of_times() -> None:
    for size in (10, 500):
        plan = chain_plan(size)
        CountingTuple.scans = 0
        matrix = github_matrix(plan)
        Console(file=io.StringIO(), width=120).print(plan_table(plan))
        for i in range(size):
            assert plan.action(f"img{i}") is not None
        assert CountingTuple.scans <= 4, (size, CountingTuple.scans)
    level = {entry["image"]: entry["level"] for entry in matrix["include"]}
    assert [level[f"img{i}"] for i in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    assert matrix["levels"][0][:2] == ["img0", "img5"]


def test_long_messages_are_not_broken_at_the_console_width(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 70) / ("e" * 70)
    (deep / "app").mkdir(parents=True)
    (deep / "app" / "Dockerfile").write_text("FROM scratch\n")
    manifest = deep / "imagectl.yaml"
    manifest.write_text(
        "version: 1\nregistry: 127.0.0.1:5000/acme\n"
        "families:\n  f:\n    from: scratch\n    images:\n"
        '      app: {context: app, version: "1.0"}\n'
        'bases:\n  scratch: {ref: "127.0.0.1:5000/up/scratch:1"}\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "imagectl", "-f", str(manifest), "validate"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 150
    assert lines[0].startswith(str(manifest)) and lines[0].endswith("1 file")


class CountingProgress(Progress):
    builds = 0

    def _view(self) -> RenderableType:
        CountingProgress.builds += 1
        return super()._view()


def render(view: RenderableType) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(view)
    return buffer.getvalue()


START = StepEvent(StepName.START)
A_BUILD = (
    START,
    StepEvent.producing(Producer.BUILD),
    StepEvent(StepName.BUILT),
    StepEvent(StepName.PUSHED, begun=True),
    StepEvent(StepName.PUSHED),
    StepEvent(StepName.VERIFIED),
    StepEvent(StepName.RECORDED),
)


def test_live_progress_of_a_big_apply_is_not_redrawn_per_event() -> None:
    plan = chain_plan(2000)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    CountingProgress.builds = 0
    with CountingProgress(console, plan.actions) as progress:
        for action in plan.actions:
            for event in A_BUILD:
                progress(action.image, event)
    assert CountingProgress.builds < 200  # 10,000 events; redrawn at 4 Hz, not per event


def test_live_progress_shows_images_in_flight_and_counts_the_rest() -> None:
    plan = chain_plan(40)
    progress = Progress(Console(file=io.StringIO(), force_terminal=True), plan.actions)
    for event in A_BUILD:
        progress("img0", event)
    progress("img1", START)
    progress("img1", StepEvent.producing(Producer.BUILD))
    progress("img2", OutcomeState.SKIPPED)
    shown = render(progress._view())
    assert "img1" in shown and "building" in shown
    assert "img0 " not in shown and "img3 " not in shown
    assert "1 done, 1 in flight, 1 skipped, 37 waiting" in shown
    small = Progress(Console(file=io.StringIO(), force_terminal=True), chain_plan(3).actions)
    assert all(f"img{i}" in render(small._view()) for i in range(3))


def test_progress_off_a_terminal_prints_one_line_per_event() -> None:
    buffer = io.StringIO()
    progress = Progress(Console(file=buffer, width=120), chain_plan(2).actions)
    for event in A_BUILD:
        progress("img0", event)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "img0: building (0.0s)" and lines[1].startswith("img0: pushing (")
    assert lines[-1].startswith("img0: done (") and len(lines) == 3


def test_progress_names_each_step_by_what_really_runs() -> None:
    buffer = io.StringIO()
    progress = Progress(Console(file=buffer, width=120), chain_plan(1).actions)
    for event in (
        START,
        StepEvent.producing(Producer.REBASE),
        StepEvent(StepName.PUSHED),
        StepEvent(StepName.VERIFIED, begun=True),
        StepEvent(StepName.SIGNED, begun=True),
        StepEvent(StepName.TAGGED, begun=True),
        StepEvent(StepName.TAGGED, "1.0"),
        StepEvent(StepName.RECORDED, begun=True),
        StepEvent(StepName.RECORDED),
    ):
        progress("img0", event)
    words = [line.split(": ", 1)[1].split(" (")[0] for line in buffer.getvalue().splitlines()]
    assert words == [
        "rebasing",
        "verifying",
        "signing and attesting",
        "tagging",
        "recording",
        "done",
    ]
    assert str(StepEvent(StepName.TAGGED, "1.0")) == "tagged:1.0"  # the fault-point key


def test_github_outputs_are_computed_only_inside_github_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagectl import commands

    calls: list[int] = []

    def matrix(plan: Plan) -> str:
        calls.append(len(plan.actions))
        return "{}"

    monkeypatch.setattr(commands, "github_matrix_json", matrix)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    commands._github_plan_outputs(chain_plan(3))
    assert calls == []
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    commands._github_plan_outputs(chain_plan(3))
    assert calls == [3] and "matrix<<" in outputs.read_text()
