"""Registry faults through a proxy of our own: imagectl keeps working and loses nothing.

In-process tests drive `RegistryClient` through the proxy with an injected sleep
(so `Retry-After` and backoff are measured exactly, without waiting); CLI tests
point a git-ops manifest's registry and base at the proxy and run the real
`plan`/`apply` (docker pushes through the proxy too; faults hit only imagectl's
own requests unless a test says otherwise). The proxy counts what it saw.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from devenv.registry import RegistryServer
from imagectl.errors import RegistryError, UsageError
from imagectl.registry import RegistryClient, RetryPolicy, StaticCredentials, parse_reference
from imagectl.registry.settings import retry_policy
from tests.fixtures.oci import push_image
from tests.reliability.conftest import Repo, UpstreamFactory
from tests.reliability.fault_proxy import FaultProxy, Rule
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

ATTEMPTS = 5
BASE_DELAY = 0.5
MAX_DELAY = 4.0


# ---------------------------------------------------------------------------- in-process


@pytest.fixture
def image(builder_registry: RegistryServer) -> Iterator[tuple[str, str]]:
    """A synthetic image in the real registry: (repository, manifest digest)."""
    repository = f"faults/img-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=builder_registry.url, timeout=30) as http:
        pushed = push_image(
            http, repository, "1.0.0", {"org.opencontainers.image.version": "1.0.0"}
        )
    yield repository, pushed.digest


def client_via(sleeps: list[float], **kw: object) -> RegistryClient:
    """A client with a known retry policy whose waits are recorded, not slept."""
    return RegistryClient(
        credentials=StaticCredentials({}),
        retry=RetryPolicy(attempts=ATTEMPTS, base_delay=BASE_DELAY, max_delay=MAX_DELAY),
        sleep=sleeps.append,
        **kw,  # type: ignore[arg-type]
    )


def backoff_bounds(attempt: int) -> tuple[float, float]:
    """The jittered backoff after failed attempt `attempt`: [ceiling/2, ceiling]."""
    ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
    return ceiling / 2, ceiling


TRANSIENT = {
    "429 without Retry-After": ("status", 429),
    "500": ("status", 500),
    "502": ("status", 502),
    "503": ("status", 503),
    "dropped connection": ("drop", 0),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_fault_is_retried_with_bounded_backoff(
    fault: str, proxy: FaultProxy, image: tuple[str, str]
) -> None:
    kind, status = TRANSIENT[fault]
    repository, digest = image
    injected = f"{fault} twice on HEAD manifest"
    with result("faults", f"client: transient {fault}", injected) as rec:
        rule = proxy.add(kind, "HEAD", f"/{repository}/manifests/1.0.0", status=status, times=2)
        sleeps: list[float] = []
        with client_via(sleeps) as client:
            info = client.head_manifest(parse_reference(f"{proxy.host}/{repository}:1.0.0"))
        assert info is not None and info.digest == digest
        seen = proxy.requests("HEAD", f"/{repository}/manifests/1.0.0")
        assert rule.hits == 2 and len(seen) == 3, seen  # two faults, then the answer
        assert len(sleeps) == 2
        for attempt, slept in enumerate(sleeps, start=1):
            low, high = backoff_bounds(attempt)
            assert low <= slept <= high, (attempt, slept)
        rec.count = len(seen)
        rec.observed = (
            f"{len(seen)} requests, backoff {[round(s, 3) for s in sleeps]}s, right digest"
        )


def test_retry_after_is_honoured(proxy: FaultProxy, image: tuple[str, str]) -> None:
    repository, digest = image
    with result("faults", "client: 429 with Retry-After: 7", "429 + Retry-After: 7 once") as rec:
        proxy.fail("HEAD", f"/{repository}/manifests/", 429, headers={"Retry-After": "7"})
        sleeps: list[float] = []
        with client_via(sleeps) as client:
            info = client.head_manifest(parse_reference(f"{proxy.host}/{repository}:1.0.0"))
        assert info is not None and info.digest == digest
        assert sleeps == [7.0], "the client must wait what the server asked, not its backoff"
        rec.count = len(proxy.requests("HEAD", "/manifests/"))
        assert rec.count == 2
        rec.observed = f"waited {sleeps[0]}s (>= Retry-After), then succeeded"


def test_persistent_5xx_gives_up_after_the_attempts_with_a_clear_error(
    proxy: FaultProxy, image: tuple[str, str]
) -> None:
    repository, _ = image
    with result("faults", "client: persistent 503", "503 on every GET manifest") as rec:
        proxy.fail("GET", f"/{repository}/manifests/", 503, times=None)
        sleeps: list[float] = []
        with client_via(sleeps) as client, pytest.raises(RegistryError) as raised:
            client.get_manifest(parse_reference(f"{proxy.host}/{repository}:1.0.0"))
        message = str(raised.value)
        assert proxy.host in message and "HTTP 503" in message, message
        assert "fault proxy: injected HTTP 503" in message  # what the server said
        assert f"after {ATTEMPTS} attempts" in message
        rec.count = len(proxy.requests("GET", "/manifests/"))
        assert rec.count == ATTEMPTS and len(sleeps) == ATTEMPTS - 1
        rec.observed = f"gave up after {rec.count} requests: {message}"


def test_client_errors_are_not_retried(proxy: FaultProxy, image: tuple[str, str]) -> None:
    repository, _ = image
    with result("faults", "client: 400 is permanent", "400 on GET manifest") as rec:
        proxy.fail("GET", f"/{repository}/manifests/", 400, times=None)
        sleeps: list[float] = []
        with client_via(sleeps) as client, pytest.raises(RegistryError, match="HTTP 400"):
            client.get_manifest(parse_reference(f"{proxy.host}/{repository}:1.0.0"))
        rec.count = len(proxy.requests("GET", "/manifests/"))
        assert rec.count == 1 and sleeps == []
        rec.observed = "failed at once, no retry"


def test_slow_response_past_the_timeout_is_retried(
    proxy: FaultProxy, image: tuple[str, str]
) -> None:
    repository, digest = image
    injected = "HEAD delayed 1.5s once (client timeout 0.5s), then 0.2s (within it)"
    with result("faults", "client: slow responses", injected) as rec:
        proxy.add("delay", "HEAD", f"/{repository}/manifests/", delay=1.5)
        proxy.add("delay", "HEAD", f"/{repository}/manifests/", delay=0.2)
        sleeps: list[float] = []
        with client_via(sleeps, timeout=0.5) as client:
            info = client.head_manifest(parse_reference(f"{proxy.host}/{repository}:1.0.0"))
        assert info is not None and info.digest == digest
        rec.count = len(proxy.requests("HEAD", "/manifests/"))
        assert rec.count == 2 and len(sleeps) == 1  # the timed-out one retried, the slow one kept
        rec.observed = "timed-out request retried once; a slow answer within the timeout used"


@pytest.mark.parametrize("what", ["manifest by tag", "manifest by digest", "config blob"])
def test_corrupted_body_is_rejected_by_digest(
    what: str, proxy: FaultProxy, image: tuple[str, str]
) -> None:
    repository, digest = image
    ref = parse_reference(f"{proxy.host}/{repository}:1.0.0")
    with result("faults", f"client: corrupted {what}", f"one hex digit flipped in {what}") as rec:
        sleeps: list[float] = []
        with client_via(sleeps) as client:
            if what == "config blob":
                proxy.add("corrupt", "GET", f"/{repository}/blobs/")
                with pytest.raises(RegistryError, match="digest mismatch"):
                    client.image_config(ref)
            else:
                target = ref if what == "manifest by tag" else ref.with_digest(digest)
                proxy.add("corrupt", "GET", f"/{repository}/manifests/")
                with pytest.raises(RegistryError, match="digest mismatch") as raised:
                    client.get_manifest(target)
                assert digest in str(raised.value)
            # the fault is gone: the same call now succeeds with the right bytes
            assert client.get_manifest(ref).digest == digest
        rec.count = 1
        rec.observed = "rejected: digest mismatch (never parsed into use)"


# ---------------------------------------------------------------------------- CLI


IMAGES = {"base": "upstream", "app": "base"}


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def test_plan_succeeds_through_transient_faults(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "503, 429 (no Retry-After), 502, dropped connection on the base HEAD"
    with result("faults", "plan: transient faults", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        clean = repo.plan()
        base = f"/{upstream.repository}/manifests/stable"  # type: ignore[attr-defined]
        proxy.reset_log()
        for kind, status in (("status", 503), ("status", 429), ("status", 502), ("drop", 0)):
            proxy.add(kind, "HEAD", base, status=status)
        assert repo.plan() == clean
        seen = proxy.requests("HEAD", base)
        # four faults then the answer: exactly the five attempts the policy allows
        assert len(seen) == 5, seen
        assert all(rule.hits == 1 for rule in proxy.rules)
        rec.count = len(seen)
        rec.observed = "plan identical to the fault-free plan after 5 attempts"


@pytest.mark.parametrize("kind", ["status", "drop"])
def test_plan_fails_clearly_when_faults_persist(
    kind: str, proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "503 on every base HEAD" if kind == "status" else "every base HEAD dropped"
    with result(
        "faults", f"plan: persistent {'503' if kind == 'status' else 'drop'}", injected
    ) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        base = f"/{upstream.repository}/manifests/stable"  # type: ignore[attr-defined]
        proxy.add(kind, "HEAD", base, status=503, times=None)
        failed = repo.run("plan")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        no_traceback(failed.stdout + failed.stderr)
        error = failed.stderr
        assert proxy.host in error, error
        if kind == "status":
            assert "HTTP 503 Service Unavailable" in error, error  # a HEAD reply has no body
        else:
            assert "cannot reach" in error, error
        assert f"after {ATTEMPTS} attempts" in error, error
        rec.count = len(proxy.requests("HEAD", base))
        assert rec.count == ATTEMPTS
        rec.observed = f"exit 1 after {rec.count} attempts: {error.strip().splitlines()[0]}"


def test_cli_waits_the_retry_after(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    with result("faults", "plan: 429 with Retry-After: 1", "429 + Retry-After: 1 once") as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        base = f"/{upstream.repository}/manifests/stable"  # type: ignore[attr-defined]
        proxy.fail("HEAD", base, 429, headers={"Retry-After": "1"})
        repo.plan()
        first, second = proxy.requests("HEAD", base)
        waited = second.at - first.at
        assert first.status == 429 and second.status == 200
        assert waited >= 1.0, f"retried after {waited:.3f}s, before the Retry-After of 1s"
        rec.count = 2
        rec.observed = f"retried {waited:.2f}s after the 429 (server's clock)"


def assert_applied(
    repo: Repo, version: str = "1.0.0", images: tuple[str, ...] = ("base", "app")
) -> None:
    lock = repo.lock()
    for name in images:
        digest = lock[name]["digest"]
        assert lock[name]["version"] == version
        assert repo.digest(name, version) == digest
        assert repo.digest(name, "1.0") == digest and repo.digest(name, "1") == digest
    assert repo.lock_committed()
    assert repo.planned() == []


def test_apply_succeeds_through_transient_faults(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = (
        "500 on the pre-build HEAD, 502 on a GET of app's manifest, 503 and a dropped connection "
        "on floating-tag PUTs, 429 on another (imagectl's requests)"
    )
    with result("faults", "apply: transient faults", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        ns = repo.namespace
        rules: list[Rule] = [
            proxy.fail("HEAD", f"/{ns}/base/manifests/1.0.0", 500),
            proxy.fail("GET", f"/{ns}/app/manifests/1.0.0$", 502),  # verify's read by tag
            proxy.fail("PUT", f"/{ns}/base/manifests/1.0$", 503),
            proxy.add("drop", "PUT", f"/{ns}/base/manifests/1$"),
            proxy.fail("PUT", f"/{ns}/app/manifests/1$", 429),
        ]
        applied = repo.run("apply", "--jobs", "1")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert all(rule.hits == 1 for rule in rules), [(r.path.pattern, r.hits) for r in rules]
        assert_applied(repo)
        rec.count = sum(rule.hits for rule in rules)
        rec.observed = f"{rec.count} faults absorbed; exit 0; lock, tags and git consistent"


def test_apply_fails_clearly_on_persistent_faults_and_a_rerun_recovers(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "HTTP 500 on every PUT of base's floating tag 1.0"
    with result("faults", "apply: persistent 500 on a floating-tag PUT", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        tag_put = f"/{repo.namespace}/base/manifests/1.0$"
        rule = proxy.fail("PUT", tag_put, 500, times=None)
        failed = repo.run("apply", "--jobs", "1")
        out = failed.stdout + failed.stderr
        assert failed.returncode == 1, out
        no_traceback(out)
        assert re.search(
            rf"base failed: PUT manifest {re.escape(proxy.host)}/\S+/base:1\.0: registry "
            rf"{re.escape(proxy.host)} answered HTTP 500 .*fault proxy: injected HTTP 500",
            " ".join(out.split()),
        ), out
        assert rule.hits == ATTEMPTS
        assert "skipped" in out  # app, built on base, never started
        assert repo.lock() == {}, "a failed image must not be recorded"
        pushed = repo.digest("base", "1.0.0")
        assert pushed is not None and repo.digest("base", "1.0") is None
        proxy.clear()
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert repo.digest("base", "1.0.0") == pushed, "the immutable tag moved"
        assert "adopted" in rerun.stdout
        assert_applied(repo)
        rec.count = rule.hits
        rec.observed = (
            f"exit 1 after {rule.hits} attempts naming registry and server message, app "
            "skipped, nothing recorded; re-run adopted base and finished"
        )


def test_corrupted_manifest_is_never_tagged(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "one hex digit flipped in the manifest GET whose bytes the floating-tag PUTs copy"
    with result("faults", "apply: corrupted manifest while moving a floating tag", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", {"base": "upstream"}, upstream, host=proxy.host)
        repo.ok("apply")
        old = repo.digest("base", "1.0")
        assert old is not None and old == repo.digest("base", "1.0.0")
        upstream("v2")
        # verify's one GET by tag is also the source of every floating-tag PUT
        by_tag = f"/{repo.namespace}/base/manifests/1.0.1$"
        rule = proxy.add("corrupt", "GET", by_tag, times=None)
        failed = repo.run("apply")
        out = failed.stdout + failed.stderr
        assert failed.returncode == 1, out
        no_traceback(out)
        flat = " ".join(out.split())
        assert "base failed: digest mismatch for GET manifest" in flat, out
        assert rule.hits == 1, "a digest mismatch is not a transient fault: no retry"
        new = repo.digest("base", "1.0.1")
        assert new is not None, "the immutable tag was pushed before the retag"
        for tag in ("1.0", "1"):
            assert repo.digest("base", tag) == old, f"floating tag {tag} moved to unverified bytes"
        assert repo.lock()["base"]["version"] == "1.0.0"
        assert repo.lock_committed()
        proxy.clear()
        rerun = repo.run("apply")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert repo.digest("base", "1.0.1") == new
        assert_applied(repo, "1.0.1", ("base",))
        rec.count = rule.hits
        rec.observed = (
            "image failed with a digest mismatch; 1.0 and 1 stayed on 1.0.0; lock unchanged; "
            "re-run adopted 1.0.1 and moved them"
        )


def test_retry_policy_is_tuned_by_the_environment(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "IMAGECTL_RETRY_ATTEMPTS=2 with 503 on every base HEAD; malformed values"
    with result("faults", "plan: retry attempts set by the environment", injected) as rec:
        policy = retry_policy({"IMAGECTL_RETRY_ATTEMPTS": "3", "IMAGECTL_RETRY_BASE_DELAY": "0"})
        assert (policy.attempts, policy.base_delay) == (3, 0.0)
        for bad in ({"IMAGECTL_RETRY_ATTEMPTS": "0"}, {"IMAGECTL_RETRY_MAX_DELAY": "soon"}):
            with pytest.raises(UsageError, match="IMAGECTL_RETRY_"):
                retry_policy(bad)
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        base = f"/{upstream.repository}/manifests/stable"  # type: ignore[attr-defined]
        proxy.fail("HEAD", base, 503, times=None)
        failed = repo.run("plan", env={"IMAGECTL_RETRY_ATTEMPTS": "2"})
        assert failed.returncode == 1 and "after 2 attempts" in failed.stderr, failed.stderr
        rec.count = len(proxy.requests("HEAD", base))
        assert rec.count == 2
        usage = repo.run("plan", env={"IMAGECTL_RETRY_ATTEMPTS": "many"})
        assert usage.returncode == 2 and "IMAGECTL_RETRY_ATTEMPTS" in usage.stderr
        rec.observed = "2 attempts exactly; a malformed value is a usage error (exit 2)"
