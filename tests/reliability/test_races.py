"""Concurrent applies and a base that moves under a running apply.

Interleavings are forced, not hoped for: builds wait at the test's gate, and the
fault proxy holds chosen registry requests until the test releases them.
"""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    LABEL_BASE_DIGEST,
    Gate,
    Repo,
    Running,
    UpstreamFactory,
)
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.record import result
from tests.reliability.test_gitsync import add_remote, clone, git_out, subjects

pytestmark = pytest.mark.reliability


def first_to_exit(runs: list[Running], timeout: float = 300.0) -> Running:
    """The first of `runs` to end (a bounded poll of external processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in runs:
            if run.proc.poll() is not None:
                run.wait()
                return run
        time.sleep(0.05)
    raise TimeoutError("no run ended")


def imagectl_commits(repo: Repo) -> list[str]:
    return [line for line in repo.git("log", "--format=%s").splitlines() if "imagectl" in line]


# ---------------------------------------------------------------------------- one repository


def test_second_apply_on_the_same_repo_fails_at_once_or_waits_never_interleaves(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> None:
    injected = "apply started while another apply of the same repo is building"
    with result("races", "two applies on one repository", injected) as rec:
        token = gate.token()
        upstream("v1")
        repo = make_repo(
            "gitops",
            {"alpha": "upstream"},
            upstream,
            dockerfiles={"alpha": gate.dockerfile("alpha", token)},
        )
        first = repo.start("apply")
        gate.wait_arrived(token)  # the first apply holds the repository lock and is building
        waiter = repo.start("apply", "--lock-timeout", "300")

        started = time.monotonic()
        busy = repo.run("apply", "--lock-timeout", "0")
        at_once = time.monotonic() - started
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert "Traceback" not in busy.stderr
        message = " ".join(busy.stderr.split())
        assert f"pid {first.pid} on {socket.gethostname()}" in message, message
        assert "another imagectl apply holds" in message
        assert "Plan:" not in busy.stdout, "the refused run planned before taking the lock"

        started = time.monotonic()
        timed = repo.run("apply", "--lock-timeout", "1")
        waited = time.monotonic() - started
        assert timed.returncode == 1 and "did not release it within 1s" in timed.stderr
        assert waited >= 1.0

        gate.release(token)
        assert first.wait() == 0, first.output
        assert waiter.wait() == 0, waiter.output
        assert "Nothing to do" in waiter.stdout, waiter.output  # planned after the first ended
        assert repo.versions("alpha") == ["1.0.0"]
        assert repo.digest("alpha", "1.0.0") == repo.lock()["alpha"]["digest"]
        assert imagectl_commits(repo) == ["imagectl: rebuild 1 image"]
        assert repo.lock_committed()
        rec.count = 3
        rec.observed = (
            f"--lock-timeout 0 refused in {at_once:.1f}s naming pid and host; --lock-timeout 1 "
            f"waited {waited:.1f}s then refused; --lock-timeout 300 waited and found nothing "
            "to do; one commit, one version"
        )


# ---------------------------------------------------------------------------- two clones


def two_clones(
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    gate: Gate,
    tmp_path: Path,
    *,
    buildah: bool,
) -> tuple[Repo, Repo, str]:
    """A repo and a git clone of it, same manifest, both pushing through `proxy`.

    With `buildah`, each clone builds in a storage root of its own: two machines.
    The second clone is one unrelated commit ahead (a doc change), as clones of a busy
    repo are: the same build inputs, another revision label, so another digest.
    """
    token = gate.token()
    upstream("v1")
    first = make_repo(
        "one",
        {"alpha": "upstream"},
        upstream,
        host=proxy.host,
        dockerfiles={"alpha": gate.dockerfile("alpha", token)},
    )
    if buildah:
        text = first.manifest.read_text().replace("builder: docker", "builder: buildah")
        first.manifest.write_text(text)
        first.commit_all("build with buildah")
    root = tmp_path / "two"
    subprocess.run(["git", "clone", "-q", str(first.root), str(root)], check=True)
    second = Repo(root, first.registry, first.namespace)
    (root / "NOTES.md").write_text("unrelated change\n")
    second.commit_all("docs: notes")
    if buildah:
        first.env["IMAGECTL_BUILDAH_ROOT"] = str(tmp_path / "buildah-one")
        second.env["IMAGECTL_BUILDAH_ROOT"] = str(tmp_path / "buildah-two")
    return first, second, token


def start_both_past_their_first_check(
    clones: tuple[Repo, ...], proxy: FaultProxy, tag_path: str
) -> list[Running]:
    """Start an apply in each clone; return once each has looked for the tag (absent)
    before building (their builds then wait at the gate). Unclaimed, under
    --guard-races: the check just before the push is what these races are about."""
    runs = [clone.start("apply", "--guard-races") for clone in clones]
    proxy.wait_requests("HEAD", tag_path, len(clones))
    return runs


def test_two_clones_at_once_the_loser_adopts_the_identical_build(
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    gate: Gate,
    tmp_path: Path,
    buildah_root: Path,
) -> None:
    injected = (
        "two clones (own builders) apply --guard-races the same manifest at once; the "
        "second's pre-push check is held until the first has pushed, tagged and committed"
    )
    with result("races", "two clones at once: one pushes, the other adopts", injected) as rec:
        one, two, token = two_clones(make_repo, upstream, proxy, gate, tmp_path, buildah=True)
        tag_path = f"/{one.namespace}/alpha/manifests/1.0.0$"
        runs = start_both_past_their_first_check((one, two), proxy, tag_path)
        # the next HEAD of the tag from each run is its check just before pushing
        holds = [proxy.add("hold", "HEAD", tag_path), proxy.add("hold", "HEAD", tag_path)]
        gate.release(token)
        proxy.wait_hits(holds[0], 1)
        proxy.wait_hits(holds[1], 1)
        holds[0].release.set()  # one run pushes first ...
        winner = first_to_exit(runs)
        assert winner.proc.returncode == 0, winner.output
        loser = runs[1] if winner is runs[0] else runs[0]
        holds[1].release.set()  # ... the other checks again only now
        assert loser.wait() == 0, loser.output
        assert "adopted" in loser.stdout, loser.output

        pushed = one.digest("alpha", "1.0.0")
        assert pushed is not None
        for clone in (one, two):
            assert clone.lock()["alpha"]["digest"] == pushed
            assert clone.lock_committed()
            assert clone.planned() == []
        assert one.digest("alpha", "1") == pushed and one.digest("alpha", "1.0") == pushed
        assert one.versions("alpha") == ["1.0.0"]
        rec.count = 2
        rec.observed = "the second run adopted the first's 1.0.0; both locks name the pushed digest"


def gated_remote(remote: Path, gate: Gate, token: str) -> None:
    """Every push to `remote` waits in its pre-receive hook until the test lets it through.

    Two pushes held there at once both see the same old head; once released, git updates
    the branch for the first and refuses the second (its expected old head is gone).
    """
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f"exec {sys.executable} -c 'import urllib.request as u; "
        f'u.urlopen("{gate.url(token)}", timeout=150).read()\'\n'
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def test_two_clones_pushing_at_once_never_repoint_an_immutable_tag(
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    gate: Gate,
    tmp_path: Path,
    buildah_root: Path,
) -> None:
    """The registry has no compare-and-swap; git has one. Under --git-push each run
    claims its versions in git before pushing any image: of two clones of one remote
    that both plan 1.0.0, only the one whose claim lands builds it."""
    injected = (
        "two clones of one bare remote (own builders) apply --git-push at once; both plan "
        "1.0.0 and their claim pushes are held together in the remote's pre-receive hook"
    )
    with result("races", "two clones at once: both push the same version", injected) as rec:
        build, hook = gate.token(), gate.token()
        upstream("v1")
        one = make_repo(
            "one",
            {"alpha": "upstream"},
            upstream,
            host=proxy.host,
            dockerfiles={"alpha": gate.dockerfile("alpha", build)},
        )
        one.manifest.write_text(
            one.manifest.read_text().replace("builder: docker", "builder: buildah")
        )
        one.commit_all("build with buildah")
        remote = add_remote(one, tmp_path)
        two = clone(remote, tmp_path / "two", one)
        gated_remote(remote, gate, hook)
        one.env["IMAGECTL_BUILDAH_ROOT"] = str(tmp_path / "buildah-one")
        two.env["IMAGECTL_BUILDAH_ROOT"] = str(tmp_path / "buildah-two")

        runs = [one.start("apply", "--git-push"), two.start("apply", "--git-push")]
        gate.wait_arrived(hook, 2)  # both planned 1.0.0 and are pushing their claims
        tag_path = f"/{one.namespace}/alpha/manifests/1.0.0$"
        assert proxy.requests("PUT", tag_path, agent=None) == []
        gate.release(hook)
        loser = first_to_exit(runs)  # the winner is building, held at the build gate
        winner = runs[0] if loser is runs[1] else runs[1]
        assert loser.proc.returncode == 0, loser.output
        said = " ".join(loser.stdout.split())
        assert "The remote branch moved: re-planning" in said, loser.output
        assert f"alpha: 1.0.0 is claimed by pid {winner.pid}" in said, loser.output
        assert "Nothing to do" in said and "Traceback" not in loser.output

        gate.release(build)
        assert winner.wait() == 0, winner.output
        winner_repo = one if winner is runs[0] else two
        loser_repo = two if winner is runs[0] else one
        recorded = winner_repo.lock()["alpha"]["digest"]
        assert one.digest("alpha", "1.0.0") == recorded
        assert one.versions("alpha") == ["1.0.0"]
        pushes = proxy.requests("PUT", tag_path, agent=None)
        assert len(pushes) == 1, f"the immutable tag was pushed {len(pushes)} times"
        assert subjects(remote)[:3] == [
            "imagectl: rebuild 1 image",
            "imagectl: claim 1 image",
            "build with buildah",
        ]
        loser_repo.git("pull", "-q", "--ff-only")
        assert loser_repo.lock()["alpha"]["digest"] == recorded
        assert loser_repo.planned() == []
        assert "claims:" not in (loser_repo.root / "imagectl.lock").read_text()
        rec.count = 2
        rec.observed = (
            "one claim landed, the other push was refused; that run re-planned, found 1.0.0 "
            "claimed by the other pid and left it alone; 1.0.0 pushed once, never repointed"
        )


def test_a_claim_left_by_a_killed_run_is_dropped_by_the_next_run(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, tmp_path: Path
) -> None:
    injected = "apply --git-push SIGKILLed after its claim was pushed, while building alpha"
    with result("races", "a claim left by a killed run", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", {"alpha": "upstream"}, upstream)
        remote = add_remote(repo, tmp_path)
        killed = repo.run("apply", "--git-push", env={"IMAGECTL_FAULT_KILL_AT": "alpha:built"})
        assert killed.returncode == -9, killed.stdout + killed.stderr
        assert subjects(remote)[0] == "imagectl: claim 1 image"
        assert "claims:" in (repo.root / "imagectl.lock").read_text()

        rerun = repo.run("apply", "--git-push")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        body = git_out(remote, "log", "-1", "--format=%B", "main~1")
        assert "alpha 1.0.0: claim of pid" in body and "dropped" in body, body
        assert subjects(remote)[:3] == [
            "imagectl: rebuild 1 image",
            "imagectl: claim 1 image",
            "imagectl: claim 1 image",
        ]
        assert repo.versions("alpha") == ["1.0.0"]
        assert repo.lock()["alpha"]["digest"] == repo.digest("alpha", "1.0.0")
        assert "claims:" not in (repo.root / "imagectl.lock").read_text()
        assert repo.lock_committed() and repo.planned() == []
        rec.count = 1
        rec.observed = (
            "the next run saw the claim's process gone, dropped it in its own claim commit, "
            "built 1.0.0 once and released its claim"
        )


def test_two_applies_on_one_docker_daemon_never_record_each_others_build(
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    gate: Gate,
    tmp_path: Path,
) -> None:
    """A shared docker daemon keeps one local image per tag: the later build of
    `alpha:1.0.0` replaces the earlier one's, and `docker push` sends what the tag names."""
    injected = (
        "two clones with different alpha inputs (--guard-races) build alpha 1.0.0 on one "
        "docker daemon; the first pushes only after the second's build re-tagged the local image"
    )
    with result("races", "two applies share one docker daemon", injected) as rec:
        one, two, token = two_clones(make_repo, upstream, proxy, gate, tmp_path, buildah=False)
        other = gate.token()  # the second clone changed alpha: other inputs, same version
        (two.root / "alpha" / "Dockerfile").write_text(gate.dockerfile("alpha", other))
        two.commit_all("alpha: change")
        tag_path = f"/{one.namespace}/alpha/manifests/1.0.0$"
        runs = start_both_past_their_first_check((one, two), proxy, tag_path)
        holds = [proxy.add("hold", "HEAD", tag_path), proxy.add("hold", "HEAD", tag_path)]
        gate.release(token)  # one's build finishes first ...
        proxy.wait_hits(holds[0], 1)
        gate.release(other)  # ... then two's, re-tagging the daemon's alpha:1.0.0
        proxy.wait_hits(holds[1], 1)
        holds[0].release.set()  # one pushes now: the daemon's alpha:1.0.0 is two's build
        assert runs[0].wait() == 1, runs[0].output
        message = " ".join(runs[0].output.split())
        assert "is not the one this run built" in message, message
        assert "Traceback" not in runs[0].output
        holds[1].release.set()
        assert runs[1].wait() == 0, runs[1].output

        labels = one.labels("alpha", "1.0.0")
        assert "alpha" not in one.lock(), "one recorded a build that is not its own"
        assert two.lock()["alpha"]["inputs"] == labels["dev.imagectl.inputs"]
        assert two.lock()["alpha"]["digest"] == one.digest("alpha", "1.0.0")
        assert one.digest("alpha", "1") == two.lock()["alpha"]["digest"]
        rec.count = 1
        rec.observed = (
            "the first apply saw that the daemon pushed the other clone's build and failed "
            "clearly; the other adopted it; every lock matches the registry's labels"
        )


# ---------------------------------------------------------------------------- moving base


def base_lineage(repo: Repo, images: dict[str, str], version: str) -> dict[str, str]:
    """The upstream digest each image of `version` was built from, following internal bases."""
    lock = repo.lock()
    lineage: dict[str, str] = {}
    for name in images:  # parents come first in the dict
        label = repo.labels(name, version)[LABEL_BASE_DIGEST]
        parent = images[name]
        if parent == "upstream":
            lineage[name] = label
        else:
            assert label == lock[parent]["digest"], f"{name} not built on the recorded {parent}"
            lineage[name] = lineage[parent]
    return lineage


def test_base_moving_during_an_apply_never_mixes_digests(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, gate: Gate
) -> None:
    images = {"alpha": "upstream", "beta": "upstream", "gamma": "alpha"}
    injected = (
        "the upstream base is re-published after `plan --out` and again while alpha builds "
        "(a saved plan, then a fresh apply)"
    )
    with result("races", "base moves between plan and apply, and during apply", injected) as rec:
        token = gate.token()
        v1 = upstream("v1")
        repo = make_repo(
            "gitops", images, upstream, dockerfiles={"alpha": gate.dockerfile("alpha", token)}
        )
        repo.ok("plan", "--out", "plan.json")
        v2 = upstream("v2")  # moves between plan and apply
        gate.release(token)
        repo.ok("apply", "plan.json", "--jobs", "1")
        assert set(base_lineage(repo, images, "1.0.0").values()) == {v1}, "saved plan not exact"

        # a fresh apply, with the base moving again while its first image builds
        token = gate.token()
        (repo.root / "alpha" / "Dockerfile").write_text(gate.dockerfile("alpha", token))
        repo.commit_all("alpha: new gate")
        run = repo.start("apply", "--jobs", "1")
        gate.wait_arrived(token)  # planned (saw v2), building alpha
        v3 = upstream("v3")
        gate.release(token)
        assert run.wait() == 0, run.output
        lineage = base_lineage(repo, images, "1.0.1")
        assert set(lineage.values()) == {v2}, f"one run mixed base digests: {lineage}"

        repo.ok("apply", "--jobs", "1")  # the next run builds the newest base, for all
        assert set(base_lineage(repo, images, "1.0.2").values()) == {v3}
        assert repo.planned() == []
        rec.count = 3
        rec.observed = (
            "saved plan built v1 only; the run that saw v2 built all on v2 though v3 "
            "appeared mid-run; the next run built all on v3"
        )
