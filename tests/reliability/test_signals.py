"""SIGTERM, Ctrl-C and build timeouts during `imagectl apply`, timed by a build gate
rather than by sleeping.

`alpha`'s Dockerfile runs ``wget`` against the test's gate, so the test knows
exactly when alpha is being built and decides when that build may finish.
`beta` is independent of alpha, `gamma` is built on alpha. With ``--jobs 1``
images start in name order, so alpha is the one in flight.

First signal: the image in flight finishes and is recorded, no new image starts,
the lock is consistent and committed, exit 130. A second signal aborts; either
way a re-run converges to the uninterrupted end state, and no build process
(client or RUN step, reparented or not) outlives imagectl.

A build that runs past its `timeout` is killed with every process it started,
that image fails, and the other images go on. Processes are looked for in /proc
by a `sleep 600.<n>` argument unique to the test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.procs import processes, sleep_marker, wait_gone, wait_started, with_arg
from tests.reliability.conftest import Gate, Repo, UpstreamFactory
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

IMAGES = {"alpha": "upstream", "beta": "upstream", "gamma": "alpha"}
STOPPING = "finishing images in flight"


def gated_repo(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> tuple[Repo, str]:
    token = gate.token()
    upstream("v1")
    repo = make_repo(
        "gitops", IMAGES, upstream, dockerfiles={"alpha": gate.dockerfile("alpha", token)}
    )
    return repo, token


def assert_converges(repo: Repo, recorded: dict[str, object]) -> None:
    """A re-run builds what is left, keeps what was recorded, and ends consistent."""
    rerun = repo.run("apply", "--jobs", "1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    lock = repo.lock()
    assert sorted(lock) == sorted(IMAGES)
    for name, record in recorded.items():
        assert lock[name]["digest"] == record, f"{name} was rebuilt after it was recorded"
    for name in IMAGES:
        assert repo.versions(name) == ["1.0.0"]
        assert repo.digest(name, "1.0.0") == lock[name]["digest"]
        assert repo.digest(name, "1") == lock[name]["digest"]
    assert repo.lock_committed()
    assert repo.planned() == []


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_first_signal_finishes_the_image_in_flight_and_starts_no_other(
    how: str, make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> None:
    injected = (
        "SIGTERM to imagectl while alpha builds"
        if how == "SIGTERM"
        else "SIGINT to imagectl's process group (a terminal's Ctrl-C) while alpha builds"
    )
    with result("signals", f"{how} during a build", injected) as rec:
        repo, token = gated_repo(make_repo, upstream, gate)
        run = repo.start("apply", "--jobs", "1")
        gate.wait_arrived(token)  # alpha's RUN step is executing now
        if how == "SIGTERM":
            os.kill(run.pid, signal.SIGTERM)
        else:
            os.killpg(run.pid, signal.SIGINT)  # builds run in their own session: not hit
        run.wait_output(STOPPING)  # the handler ran: from now on no image may start
        gate.release(token)
        code = run.wait()
        out = run.output
        assert code == 130, out
        assert "Traceback" not in out, out
        lock = repo.lock()
        assert sorted(lock) == ["alpha"], "only the image in flight may finish"
        assert repo.digest("alpha", "1.0.0") == lock["alpha"]["digest"]
        assert repo.digest("alpha", "1") == lock["alpha"]["digest"]
        assert repo.tags("beta") == [] and repo.tags("gamma") == [], "a new image started"
        assert not (Path(run_log_dir(repo)) / "beta.log").exists()
        assert repo.lock_committed(), "the interrupted run must commit what it recorded"
        assert "alpha - -> 1.0.0" in repo.git("log", "-1", "--format=%B")
        assert_converges(repo, {"alpha": lock["alpha"]["digest"]})
        rec.count = 2  # images not started
        rec.observed = (
            "exit 130; alpha finished, recorded and committed; beta and gamma never started; "
            "re-run built only those two"
        )


def run_log_dir(repo: Repo) -> str:
    """The log directory of the (only) apply run so far."""
    logs = sorted((repo.root / ".imagectl" / "logs").iterdir())
    assert len(logs) == 1, logs
    return str(logs[0])


def test_second_signal_aborts_and_a_rerun_converges(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> None:
    injected = "SIGTERM twice while alpha builds"
    with result("signals", "second SIGTERM aborts", injected) as rec:
        repo, token = gated_repo(make_repo, upstream, gate)
        run = repo.start("apply", "--jobs", "1")
        gate.wait_arrived(token)
        os.kill(run.pid, signal.SIGTERM)
        run.wait_output(STOPPING)
        assert builds_running(repo), "alpha's docker build should be running now"
        os.kill(run.pid, signal.SIGTERM)
        code = run.wait()
        assert code == -signal.SIGTERM, run.output  # died of the signal: no clean-up ran
        # nothing half-written: the lock is absent or holds no image, and nothing is pushed
        assert repo.lock() == {}
        assert all(repo.tags(name) == [] for name in IMAGES)
        # imagectl killed its `docker build` before dying; dockerd then cancels the RUN
        # step (wget, waiting at the gate) on its own, asynchronously: watch for it
        assert builds_running(repo) == [], "a build client outlived imagectl"
        assert wait_gone(gate.url(token)) == [], "alpha's RUN step outlived imagectl"
        gate.release(token)
        assert_converges(repo, {})
        rec.observed = (
            "died of SIGTERM during alpha's build; no build process left behind; nothing "
            "pushed or recorded; re-run built all"
        )


@pytest.mark.parametrize("command", ["apply", "daemon"])
def test_second_signal_kills_every_build_process(
    command: str, make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> None:
    injected = f"SIGTERM twice to `imagectl {command}` while alpha's RUN step hangs"
    with result("signals", f"second SIGTERM kills a hanging build ({command})", injected) as rec:
        token, marker = gate.token(), sleep_marker()
        upstream("v1")
        hanging = hanging_dockerfile("alpha", gate.url(token), marker)
        repo = make_repo("gitops", IMAGES, upstream, dockerfiles={"alpha": hanging})
        args = ("apply", "--jobs", "1") if command == "apply" else ("daemon", "--once", "-j", "1")
        run = repo.start(*args)
        gate.wait_arrived(token)  # alpha's RUN step runs: `sleep` started, wget at the gate
        assert with_arg(marker), "alpha's RUN step should be sleeping now"
        os.kill(run.pid, signal.SIGTERM)
        run.wait_output("finishing (images|the tick) in flight")
        assert builds_running(repo), "alpha's build client should be running now"
        os.kill(run.pid, signal.SIGTERM)
        code = run.wait()
        assert code == -signal.SIGTERM, run.output  # died of the signal
        # imagectl killed its build client before dying; the RUN step lives in dockerd,
        # which cancels the build when the client goes (asynchronously: watch for it)
        assert builds_running(repo) == [], "a build client outlived imagectl"
        assert wait_gone(marker) == [], "alpha's RUN step outlived imagectl"
        # nothing half-written: the lock is absent or holds no image, and nothing is pushed
        assert repo.lock() == {}
        assert all(repo.tags(name) == [] for name in IMAGES)
        rec.count = 0  # processes left behind
        rec.observed = (
            "died of SIGTERM during alpha's build; no build client and no RUN process left "
            "(reparented ones included); nothing pushed or recorded"
        )


def builds_running(repo: Repo) -> list[int]:
    """Pids of processes still building this repo's contexts (their argv names the context)."""
    root = str(repo.root).encode()
    return processes(lambda argv: b"build" in argv and any(a.startswith(root) for a in argv[1:]))


HANGING_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN sleep {marker} & wget -q -O /dev/null {gate_url}; wait
COPY {name}.txt /{name}.txt
"""


def hanging_dockerfile(name: str, gate_url: str, marker: str) -> str:
    """A RUN step that starts `sleep <marker>`, then waits at the gate (and for the sleep)."""
    return HANGING_DOCKERFILE.format(name=name, gate_url=gate_url, marker=marker)


@pytest.mark.parametrize(
    ("builder", "network"), [("docker", None), ("buildah", "host"), ("buildah", "none")]
)
def test_build_timeout_kills_the_build_and_the_other_image_goes_on(
    builder: str,
    network: str | None,
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    gate: Gate,
    request: pytest.FixtureRequest,
) -> None:
    """`timeout: 20s` on an image whose RUN step hangs; its sibling builds meanwhile.

    docker: the manifest sets no `network:` (this dockerd has no bridge: imagectl builds
    on the host network and says so). buildah: chroot isolation with the host network;
    with `network: none`, oci isolation, where runc starts the RUN step in a session of
    its own (outside buildah's process group).
    """
    if builder == "buildah":
        request.getfixturevalue("buildah_root")
    shown = f"{builder}, network {network or 'unset'}"
    injected = f"a RUN step that never ends ({shown}), image timeout 20s"
    with result("signals", f"build timeout ({shown})", injected) as rec:
        token, marker = gate.token(), sleep_marker()
        upstream("v1")
        hanging = hanging_dockerfile("hang", gate.url(token), marker)
        if network == "none":  # no way to the gate: watch /proc for the RUN step instead
            hanging = hanging.replace(f" & wget -q -O /dev/null {gate.url(token)}; wait", "")
        repo = make_repo(
            "gitops",
            {"hang": "upstream", "ok": "upstream"},
            upstream,
            dockerfiles={"hang": hanging},
        )
        text = repo.manifest.read_text().replace("  network: host\n", "")
        text = text.replace("builder: docker", f"builder: {builder}")
        if network:
            text = text.replace("defaults:\n", f"defaults:\n  network: {network}\n")
        text = text.replace("      hang:\n", "      hang:\n        timeout: 20s\n")
        repo.manifest.write_text(text)
        repo.commit_all(f"hang times out, {shown}")
        started = time.monotonic()
        run = repo.start("apply", "--jobs", "2")
        if network != "none":
            gate.wait_arrived(token)  # hang's RUN step runs: `sleep` started, wget at the gate
        assert wait_started(marker), "hang's RUN step should be sleeping now"
        code = run.wait()
        elapsed = time.monotonic() - started
        out = run.output
        assert code == 1, out
        assert "timed out after 20s" in out, out
        assert "Traceback" not in out, out
        if builder == "docker":
            assert "no default bridge network" in out  # said once
            assert out.count("no default bridge network") == 1, out
        left = wait_gone(marker)
        assert left == [], f"RUN step still running after the timeout: pids {left}"
        assert builds_running(repo) == []
        lock = repo.lock()
        assert sorted(lock) == ["ok"], "the other image must build and be recorded"
        assert repo.digest("ok", "1.0.0") == lock["ok"]["digest"]
        assert repo.tags("hang") == []
        assert elapsed < 300, f"apply took {elapsed:.0f}s"
        log = (Path(run_log_dir(repo)) / "hang.log").read_text()
        assert "still running after 20s, killed" in log
        rec.count = 0  # processes left behind
        rec.observed = (
            f"exit 1 after {elapsed:.0f}s; hang failed 'timed out after 20s', its RUN step "
            "killed (none left in /proc); ok built, pushed and recorded"
        )
