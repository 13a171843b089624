"""A hostile registry on loopback (tests/reliability/hostile_registry.py), driven
through the real CLI: credentials reach no other origin, every resource is
bounded, hostile JSON and hostile text end in a clean error or inert output.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from tests.fixtures.oci import push_image
from tests.reliability.conftest import Registry, Repo, UpstreamFactory, base_ref, write_repo
from tests.reliability.hostile_registry import (
    HostileRegistry,
    Recorder,
    body,
    endless,
    link_chain,
    trickle,
)
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

CANARY_USER = "hostile-canary-user"
CANARY_PASSWORD = "hostile-canary-Passw0rd-91c2"
CANARY_BASIC = "Basic " + base64.b64encode(f"{CANARY_USER}:{CANARY_PASSWORD}".encode()).decode()
MIB = 1024 * 1024


@pytest.fixture
def hostile(registry: Registry) -> Iterator[HostileRegistry]:
    server = HostileRegistry(registry.host)
    yield server
    server.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


def docker_config(path: Path, host: str) -> Path:
    path.mkdir(parents=True)
    auth = base64.b64encode(f"{CANARY_USER}:{CANARY_PASSWORD}".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def clean_exit(run: object, allowed: tuple[int, ...] = (0, 1)) -> str:
    """The run's output, asserting it ended by itself, cleanly (no traceback)."""
    code, out = run.returncode, run.stdout + run.stderr  # type: ignore[attr-defined]
    assert code in allowed, out
    assert "Traceback" not in out and "RecursionError" not in out and "MemoryError" not in out
    return str(out)


def one_image_repo(
    tmp_path: Path, registry: Registry, push_host: str, base: str, namespace: str | None = None
) -> Repo:
    """A git-ops repo of one image `app` on `base`, pushing to `push_host`."""
    name = f"repo-{uuid.uuid4().hex[:6]}"
    images = {"app": "upstream"}
    return write_repo(tmp_path / name, registry, push_host, base, images, namespace=namespace)


def hostile_base_repo(tmp_path: Path, registry: Registry, hostile: HostileRegistry) -> Repo:
    """A repo pushing to the real registry, built on a base the hostile registry serves."""
    return one_image_repo(tmp_path, registry, registry.host, f"{hostile.host}/up/base:stable")


# ---------------------------------------------------------------- item 1


def test_canary_credentials_reach_no_other_origin(
    tmp_path: Path,
    registry: Registry,
    hostile: HostileRegistry,
    recorder: Recorder,
    upstream: UpstreamFactory,
) -> None:
    """apply through the hostile registry with canary basic auth; then every command
    with a Link to another origin on every listing: nothing reaches that origin."""
    with result(
        "hostile",
        "canary credentials stay on the registry's origin",
        "Link: <other origin>; rel=next on tags/list and _catalog, "
        "canary basic auth in DOCKER_CONFIG",
    ) as case:
        upstream("v1")
        hostile.require = CANARY_BASIC
        repo = one_image_repo(tmp_path, registry, hostile.host, base_ref(hostile.host, upstream))
        env = {"DOCKER_CONFIG": str(docker_config(tmp_path / "docker", hostile.host))}
        clean_exit(repo.run("apply", "--no-git", env=env), (0,))
        assert hostile.requests(agent="imagectl/"), "imagectl never used the hostile registry"

        hostile.link_to = recorder.origin
        commands = [
            ["plan"],
            ["plan", "--json"],
            ["plan", "--refresh"],
            ["apply", "--no-git", "--refresh"],
            ["status"],
            ["prune"],
            ["bases", "check"],
            ["bases", "update"],
        ]
        refused = 0
        for args in commands:
            out = clean_exit(repo.run(*args, env=env))
            assert CANARY_PASSWORD not in out
            refused += "another origin" in out
        assert recorder.requests() == [], recorder.requests()
        assert refused >= 2  # the listings (--refresh) refused the link
        case.count = len(commands) + 1
        case.observed = (
            f"{len(commands) + 1} commands, 0 requests to the other origin, "
            f"{refused} runs refused the cross-origin Link"
        )


# ---------------------------------------------------------------- item 2


def test_an_endless_manifest_stops_at_4_mib(
    tmp_path: Path, registry: Registry, hostile: HostileRegistry
) -> None:
    with result(
        "hostile", "endless manifest body", "chunked manifest body that never ends"
    ) as case:
        hostile.script(
            "HEAD", r"/v2/up/base/manifests/", body(200, b"", {"Content-Type": "application/json"})
        )
        hostile.script("GET", r"/v2/up/base/manifests/", endless())
        repo = hostile_base_repo(tmp_path, registry, hostile)
        started = time.monotonic()
        out = clean_exit(repo.run("plan"), (1,))
        elapsed = time.monotonic() - started
        assert "4 MiB limit of a manifest" in out and hostile.host in out
        sent = max(s.bytes for s in hostile.sent)
        assert sent < 64 * MIB  # the client stopped reading near the limit
        case.count = 1
        case.observed = (
            f"exit 1 after {elapsed:.1f}s; the server wrote {sent / MIB:.1f} MiB "
            "before the client hung up"
        )


@pytest.mark.parametrize(
    ("case_name", "env", "named"),
    [
        (
            "trickling headers: request deadline",
            {"IMAGECTL_REQUEST_DEADLINE": "3", "IMAGECTL_RETRY_ATTEMPTS": "1"},
            "3s request deadline (IMAGECTL_REQUEST_DEADLINE)",
        ),
        (
            "trickling headers: phase deadline",
            {"IMAGECTL_REQUEST_DEADLINE": "30", "IMAGECTL_PHASE_DEADLINE": "4"},
            "4s deadline of planning (IMAGECTL_PHASE_DEADLINE)",
        ),
    ],
)
def test_a_trickling_registry_ends_at_the_deadline(
    tmp_path: Path,
    registry: Registry,
    hostile: HostileRegistry,
    case_name: str,
    env: dict[str, str],
    named: str,
) -> None:
    settings = ", ".join(f"{k}={v}" for k, v in env.items())
    with result("hostile", case_name, f"one header byte every 0.5 s; {settings}") as case:
        hostile.script(None, r"/v2/up/base/manifests/", trickle(0.5))
        repo = hostile_base_repo(tmp_path, registry, hostile)
        started = time.monotonic()
        out = clean_exit(repo.run("plan", env=env), (1,))
        elapsed = time.monotonic() - started
        assert named in out and hostile.host in out, out
        assert elapsed < 20
        case.count = 1
        case.observed = f"exit 1 after {elapsed:.1f}s naming the {named}"


def test_an_endless_chain_of_links_stops_at_the_page_cap(
    tmp_path: Path, registry: Registry, hostile: HostileRegistry, upstream: UpstreamFactory
) -> None:
    with result("hostile", "endless pagination", "every tags page links to a new page") as case:
        upstream("v1")
        namespace = f"rel-{uuid.uuid4().hex[:8]}"
        hostile.script("GET", rf"/v2/{namespace}/app/tags/list", link_chain(f"{namespace}/app"))
        repo = one_image_repo(
            tmp_path, registry, hostile.host, base_ref(registry.host, upstream), namespace
        )
        started = time.monotonic()
        out = clean_exit(repo.run("plan", "--refresh"), (1,))
        elapsed = time.monotonic() - started
        pages = len([s for s in hostile.sent if "/tags/list" in s.path])
        assert "more than 200 pages" in out and "IMAGECTL_MAX_PAGES" in out
        assert pages == 200 and elapsed < 60
        case.count = pages
        case.observed = f"exit 1 after {pages} pages in {elapsed:.1f}s"


# ---------------------------------------------------------------- items 3 and 4


def test_deeply_nested_json_is_a_clean_error_and_an_annotation(
    tmp_path: Path, registry: Registry, hostile: HostileRegistry
) -> None:
    with result("hostile", "deeply nested JSON", "400 KB manifest of nested arrays") as case:
        nested = b"[" * 200_000 + b"]" * 200_000
        hostile.script(
            "HEAD", r"/v2/up/base/manifests/", body(200, b"", {"Content-Type": "application/json"})
        )
        hostile.script(
            "GET",
            r"/v2/up/base/manifests/",
            body(200, nested, {"Content-Type": "application/json"}),
        )
        repo = hostile_base_repo(tmp_path, registry, hostile)
        runs = {
            args: repo.run(*args.split(), env={"GITHUB_ACTIONS": "true"})
            for args in ("plan", "status", "apply --no-git")
        }
        for args, run in runs.items():
            out = clean_exit(run, (1,))
            assert "nested too deeply" in out, (args, out)
            assert run.stdout.count("::error::") == 1, run.stdout
        case.count = len(runs)
        case.observed = "plan, status, apply: exit 1, clean error and one ::error:: annotation each"


def test_hostile_text_cannot_forge_output(
    tmp_path: Path, registry: Registry, hostile: HostileRegistry
) -> None:
    with result(
        "hostile",
        "forged workflow commands and escapes",
        "error message with newlines, ::error, ::add-mask::, ANSI, OSC-8, [/]; "
        "Docker-Content-Digest '[/]'",
    ) as case:
        message = (
            "denied\n::error file=x::forged\n::add-mask::hidden\x1b[2J\x1b]8;;http://e\x1b\\link[/]"
        )
        errors = json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode()
        hostile.script("HEAD", r"/v2/up/base/manifests/", body(200, b"", {}))  # no digest: GET
        hostile.script(
            "GET",
            r"/v2/up/base/manifests/",
            body(400, errors, {"Content-Type": "application/json"}),
        )
        repo = hostile_base_repo(tmp_path, registry, hostile)
        env = {"GITHUB_ACTIONS": "true", "NO_COLOR": "1", "IMAGECTL_RETRY_ATTEMPTS": "1"}
        outputs = [clean_exit(repo.run("plan", env=env), (1,))]
        assert "forged" in outputs[0] and "DENIED" in outputs[0]  # the words shown, inert
        hostile.scripts.clear()
        forged = {"Docker-Content-Digest": "[/]", "Content-Type": "application/json"}
        hostile.script(None, r"/v2/up/base/manifests/", body(200, b"{}", forged))
        pinned = one_image_repo(
            tmp_path, registry, registry.host, f"{hostile.host}/up/base:stable@sha256:{'0' * 64}"
        )
        for target, args in ((pinned, ["bases", "check"]), (repo, ["plan", "--json"])):
            out = clean_exit(target.run(*args, env=env), (1,))
            assert "invalid digest" in out, out
            outputs.append(out)
        for out in outputs:
            assert "\x1b" not in out and "MarkupError" not in out
            lines = [line.strip() for line in out.splitlines()]
            assert [
                line for line in lines if line.startswith("::") and not line.startswith("::error::")
            ] == []
            assert not any("forged" in line for line in lines if line.startswith("::error file"))
        case.count = len(outputs)
        case.observed = (
            "plan, bases check, plan --json: exit 1, one line each, no escape, no forged command"
        )


def test_hostile_labels_never_reach_the_lock_or_break_status(
    tmp_path: Path, registry: Registry, upstream: UpstreamFactory
) -> None:
    with result(
        "hostile",
        "hostile labels recovered from the registry",
        "base.name '[/]', base.digest with OSC-8, inputs with ANSI",
    ) as case:
        upstream("v1")
        repo = one_image_repo(tmp_path, registry, registry.host, base_ref(registry.host, upstream))
        labels = {
            "org.opencontainers.image.base.name": "[/]",
            "org.opencontainers.image.base.digest": "\x1b]8;;http://evil\x1b\\sha256:x\x1b]8;;\x1b\\",
            "dev.imagectl.inputs": "\x1b[31mred[/red]",
            "org.opencontainers.image.version": "1.0.0",
        }
        with httpx.Client(base_url=f"http://{registry.host}", timeout=30) as http:
            push_image(http, repo.repository("app"), "1.0.0", labels)
        out = clean_exit(repo.run("plan", "--refresh"), (0,))
        out += clean_exit(repo.run("apply", "--no-git"), (0,))  # records what it recovered
        lock_text = (repo.root / "imagectl.lock").read_text()
        assert "evil" not in lock_text and "[/]" not in lock_text and "red" not in lock_text
        # a lock written before these rules (or by hand) holds hostile values: status survives
        yaml = YAML()
        data = yaml.load(lock_text)
        data["images"]["app"]["base"]["ref"] = "[/]"
        data["images"]["app"]["digest"] = "\x1b]8;;http://evil\x1b\\[bold]x\x1b]8;;\x1b\\"
        with (repo.root / "imagectl.lock").open("w") as handle:
            yaml.dump(data, handle)
        for run_args in (["status"], ["status", "--json"], ["plan", "--json"]):
            out += clean_exit(repo.run(*run_args, env={"NO_COLOR": "1"}), (0,))
        assert "\x1b" not in out and "MarkupError" not in out
        assert "[/]" in out  # shown as text, not taken for markup
        case.count = 5
        case.observed = (
            "hostile labels dropped at the source (never in the lock); with hostile values "
            "written into the lock, status, status --json and plan --json stay clean"
        )


def test_a_stalled_planning_holds_the_apply_mutex_no_longer_than_the_phase_deadline(
    tmp_path: Path, registry: Registry, hostile: HostileRegistry
) -> None:
    with result(
        "hostile",
        "apply mutex during a stalled planning",
        "trickling base registry; apply A holds the mutex while planning, apply B waits "
        "(--lock-timeout 60); IMAGECTL_PHASE_DEADLINE=4",
    ) as case:
        hostile.script(None, r"/v2/up/base/manifests/", trickle(0.5))
        repo = hostile_base_repo(tmp_path, registry, hostile)
        env = {"IMAGECTL_REQUEST_DEADLINE": "30", "IMAGECTL_PHASE_DEADLINE": "4"}
        started = time.monotonic()
        first = repo.start("apply", "--no-git", env=env)
        hostile.wait_sent(r"/v2/up/base/manifests/")  # A is planning, holding the mutex
        second = repo.start("apply", "--no-git", "--lock-timeout", "60", env=env)
        assert first.wait(60) == 1 and second.wait(60) == 1, first.output + second.output
        elapsed = time.monotonic() - started
        for run in (first, second):
            assert "IMAGECTL_PHASE_DEADLINE" in run.output, run.output
            assert "Traceback" not in run.output
        assert elapsed < 40
        case.count = 2
        case.observed = (
            f"A released the mutex when planning hit the 4s deadline; B then planned and "
            f"failed the same way; both done in {elapsed:.1f}s"
        )
