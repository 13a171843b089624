"""SIGTERM and Ctrl-C during `imagectl apply`, timed by a build gate rather than by sleeping.

`alpha`'s Dockerfile runs ``wget`` against the test's gate, so the test knows
exactly when alpha is being built and decides when that build may finish.
`beta` is independent of alpha, `gamma` is built on alpha. With ``--jobs 1``
images start in name order, so alpha is the one in flight.

First signal: the image in flight finishes and is recorded, no new image starts,
the lock is consistent and committed, exit 130. A second signal aborts; either
way a re-run converges to the uninterrupted end state.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

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
        # The abandoned `docker build` runs in its own session, so the abort does not stop
        # it; it ends only when it next writes to its closed pipes. Observed, not asserted
        # (timing-dependent); reported as a finding.
        orphans = builds_running(repo)
        gate.release(token)  # whatever build was left behind may finish now
        assert_converges(repo, {})
        rec.count = len(orphans)
        rec.observed = (
            f"died of SIGTERM during alpha's build; {len(orphans)} docker build process(es) "
            "still running right after; nothing pushed or recorded; re-run built all"
        )


def builds_running(repo: Repo) -> list[int]:
    """Pids of processes still building this repo's contexts (their argv names the context)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            any(arg.decode(errors="replace").startswith(str(repo.root)) for arg in argv[1:])
            and b"build" in argv
        ):
            found.append(int(proc.name))
    return found
