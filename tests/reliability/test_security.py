"""Security: canary secrets never leave where they belong.

One git-ops story on real infrastructure (a real dockerd with BuildKit, an htpasswd
registry on loopback holding the pushed images, a plain one holding the upstream
base) plants three canaries:

- the registry password, only in a temporary ``$DOCKER_CONFIG/config.json``; docker
  push and imagectl's own registry client (verify, floating tags, ``--refresh``,
  prune) both use it;
- a BuildKit build secret (``secrets: [{id: tok, env: TOK}]``), which one RUN step
  prints on purpose, and which a second image prints just before failing, so the
  failure's log tail carries it;
- a multi-line PEM-like file secret (``{id: key, file: …}``) whose last base64 line
  is 5 characters long, printed the same two ways: BuildKit prints it line by line,
  so each of its lines of 4+ characters must be redacted on its own;
- a password in the git-ops repository's ``origin`` URL;
- a signing key (cosign's encrypted format, in ``SIGN_KEY``) and its passphrase (in
  ``SIGN_PASS``): `app` is signed and attested, and `verify` reads it back.

Then every place a secret could land is read back: stdout and stderr of validate,
lint, plan (table, JSON, ``--out``), apply, status, ``plan --refresh``, prune and a
refused login; every file of the git-ops tree (``.imagectl/logs``, the lock, the saved
plan, the manifest cache); ``git log -p``; the pushed images' manifests, configs
(labels, env, history) and every layer, gunzipped; ``docker image inspect`` and
``docker history``. No canary may appear in any of them, in any of its forms (the
password raw and as the base64 basic-auth value). Positive checks keep this honest:
the secret reached the build (its sha256 is in the image), the printed secret shows
as ``***`` in the log and in the error's tail, and the pushes went through auth.

Lint refuses a secret passed as a build arg (declared in the Dockerfile or not) or
baked into ENV (IC207). A Dockerfile frontend named by tag (``# syntax=``) is refused
by lint, pinned by plan, and the build fetches only the pinned digest.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from imagectl.supply.keys import encrypt_private_key, generate
from tests.fixtures.builders import MANIFEST_ACCEPT, UpstreamBase
from tests.fixtures.registry import AuthRegistry
from tests.reliability.conftest import Registry, UpstreamFactory, base_ref, write_repo
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform",
    "GIT_AUTHOR_EMAIL": "platform@acme.test",
    "GIT_COMMITTER_NAME": "Platform",
    "GIT_COMMITTER_EMAIL": "platform@acme.test",
}
RUN_LIMIT = 600.0
REMOTE_HOST = "127.0.0.1:1"  # nothing listens there: a push would fail, and none is made

APP_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN --mount=type=secret,id=tok echo "{run}: secret is [$(cat /run/secrets/tok)]" \\
 && sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha256
RUN --mount=type=secret,id=key cat /run/secrets/key \\
 && sha256sum /run/secrets/key | cut -d' ' -f1 > /key.sha256
COPY app.txt /app.txt
USER 10001
"""
BROKEN_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN --mount=type=secret,id=key cat /run/secrets/key
RUN --mount=type=secret,id=tok echo "{run}: about to fail with [$(cat /run/secrets/tok)]" \\
 && cat /run/secrets/key && exit 3
"""


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGECTL_", "GITHUB_"))}
    return {**env, **GIT_ENV, **extra}


def run_cli(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagectl", "-f", str(root / "imagectl.yaml"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_LIMIT,
    )


def docker_config(path: Path, host: str, username: str, password: str) -> Path:
    """A DOCKER_CONFIG directory whose config.json holds basic auth for `host`."""
    path.mkdir(parents=True)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


@dataclass
class Places:
    """Every text or blob a secret could have leaked into, by a name for messages."""

    found: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, data: str | bytes) -> None:
        self.found[name] = data.encode() if isinstance(data, str) else data

    def containing(self, needle: str) -> list[str]:
        raw = needle.encode()
        return sorted(name for name, data in self.found.items() if raw in data)


@dataclass
class Story:
    root: Path
    namespace: str
    token: str  # the build secret
    pem: str  # the multi-line file secret
    password: str
    basic: str  # base64 of user:password, as sent in the Authorization header
    remote_password: str
    wrong_password: str
    runs: dict[str, subprocess.CompletedProcess[str]]
    places: Places
    labels: dict[str, str]
    token_digest_in_image: str | None
    lock: str
    pem_digest_in_image: str | None = None
    sign_passphrase: str = ""
    sign_key_forms: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def pem_canary() -> str:
    """A PEM-like key: two long base64 lines, then a short one (5 characters)."""
    body = base64.b64encode(uuid.uuid4().bytes * 3).decode()
    tail = uuid.uuid4().hex[:4] + "="
    return (
        "-----BEGIN CANARY PRIVATE KEY-----\n"
        f"{body}\n{body[::-1]}\n{tail}\n"
        "-----END CANARY PRIVATE KEY-----\n"
    )


def _layers(http: httpx.Client, repository: str, tag: str, places: Places) -> Iterator[bytes]:
    """Manifest, config and layers (gunzipped) of `repository:tag`; records each."""
    response = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    response.raise_for_status()
    manifests = [response.json()]
    places.add(f"registry {repository}:{tag} manifest", response.content)
    while manifests:
        manifest = manifests.pop()
        for child in manifest.get("manifests", []):  # an index: follow each image
            sub = http.get(
                f"/v2/{repository}/manifests/{child['digest']}", headers={"Accept": MANIFEST_ACCEPT}
            )
            sub.raise_for_status()
            places.add(f"registry {repository}@{child['digest']}", sub.content)
            manifests.append(sub.json())
        blobs = [manifest["config"]] if "config" in manifest else []
        blobs += manifest.get("layers", [])
        for blob in blobs:
            data = http.get(f"/v2/{repository}/blobs/{blob['digest']}", follow_redirects=True)
            data.raise_for_status()
            content = data.content
            assert "sha256:" + hashlib.sha256(content).hexdigest() == blob["digest"]
            if content[:2] == b"\x1f\x8b":
                content = gzip.decompress(content)
            places.add(f"registry {repository}:{tag} blob {blob['digest'][:19]}", content)
            yield content


def _file_in_tar(layer: bytes, name: str) -> bytes | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == name and member.isfile():
                    extracted = tar.extractfile(member)
                    return extracted.read() if extracted else None
    except tarfile.TarError:
        return None
    return None


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: str,
    builder_registry: RegistryServer,
    upstream_base: Callable[[str], UpstreamBase],
    auth_registry: AuthRegistry,
) -> Story:
    upstream = upstream_base("docker")
    work = tmp_path_factory.mktemp("security")
    run_id = uuid.uuid4().hex[:10]
    namespace = f"sec-{run_id}"
    token = f"tok-canary-{uuid.uuid4().hex}"
    pem = pem_canary()
    pem_file = work / "canary.pem"
    pem_file.write_text(pem)
    remote_password = f"remote-canary-{uuid.uuid4().hex}"
    wrong_password = f"wrong-canary-{uuid.uuid4().hex}"
    sign_passphrase = f"sign-canary-{uuid.uuid4().hex}"
    signing_key = generate()
    sign_pem = encrypt_private_key(signing_key, sign_passphrase.encode()).decode()
    der = signing_key.private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = signing_key.private.private_numbers().private_value
    sign_key_forms = {
        **{f"encrypted key line {i}": line for i, line in enumerate(sign_pem.splitlines()[1:-1])},
        "PKCS#8 DER base64": base64.b64encode(der).decode()[40:100],
        "private scalar hex": f"{scalar:064x}",
    }
    host = auth_registry.server.host
    password = auth_registry.password
    basic = base64.b64encode(f"{auth_registry.username}:{password}".encode()).decode()

    root = work / "gitops"
    for name, dockerfile in (("app", APP_DOCKERFILE), ("broken", BROKEN_DOCKERFILE)):
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(dockerfile.format(run=f"{name} {run_id}"))
        (root / name / f"{name}.txt").write_text(f"{name}\n")
    (root / "imagectl.yaml").write_text(
        f"""\
version: 1
registry: {host}/{namespace}
defaults:
  builder: docker
  network: host
bases:
  upstream:
    ref: {upstream.tagged}
families:
  apps:
    from: upstream
    images:
      app:
        context: app
        version: "1.0"
        secrets: [{{id: tok, env: TOK}}, {{id: key, file: "{pem_file}"}}]
        sign: {{key_env: SIGN_KEY, passphrase_env: SIGN_PASS}}
      broken:
        context: broken
        version: "1.0"
        secrets: [{{id: tok, env: TOK}}, {{id: key, file: "{pem_file}"}}]
"""
    )
    git_env = {**os.environ, **GIT_ENV}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
        ["git", "remote", "add", "origin", f"https://ops:{remote_password}@{REMOTE_HOST}/x.git"],
    ):
        subprocess.run(argv, cwd=root, check=True, env=git_env)

    good = docker_config(work / "docker-config", host, auth_registry.username, password)
    wrong = docker_config(work / "docker-wrong", host, auth_registry.username, wrong_password)
    env = cli_env(DOCKER_CONFIG=str(good), TOK=token, SIGN_KEY=sign_pem, SIGN_PASS=sign_passphrase)
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    for label, args in (
        ("validate", ["validate"]),
        ("lint", ["lint"]),
        ("plan", ["plan"]),
        ("plan --json", ["plan", "--json"]),
        ("plan --out", ["plan", "--out", "plan.json"]),
        ("apply", ["apply", "--jobs", "2"]),
        ("status", ["status"]),
        ("status --json", ["status", "--json"]),
        ("verify", ["verify", "app"]),
        ("plan --refresh", ["plan", "--refresh", "--json"]),
        ("prune", ["prune", "--keep", "1"]),
    ):
        runs[label] = run_cli(root, *args, env=env)
    runs["plan --refresh (wrong password)"] = run_cli(
        root, "plan", "--refresh", env=cli_env(DOCKER_CONFIG=str(wrong), TOK=token)
    )

    places = Places()
    for label, run in runs.items():
        places.add(f"{label} stdout", run.stdout)
        places.add(f"{label} stderr", run.stderr)
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(root).parts:
            places.add(str(path.relative_to(root)), path.read_bytes())
    history = subprocess.run(
        ["git", "log", "--all", "-p", "--format=fuller"],
        cwd=root,
        capture_output=True,
        check=True,
        env=git_env,
    )
    places.add("git log -p", history.stdout)

    labels: dict[str, str] = {}
    token_digest = pem_digest = None
    with auth_registry.http() as http:
        repository = f"{namespace}/app"
        tags = http.get(f"/v2/{repository}/tags/list")
        tags.raise_for_status()
        tag_names = list(tags.json().get("tags") or [])
        for tag in tag_names:  # the .sig and .att attachments too
            for blob in _layers(http, repository, tag, places):
                if blob[:1] == b"{" and b'"config"' in blob:
                    labels = json.loads(blob).get("config", {}).get("Labels") or labels
                found = _file_in_tar(blob, "tok.sha256")
                if found is not None:
                    token_digest = found.decode().strip()
                found = _file_in_tar(blob, "key.sha256")
                if found is not None:
                    pem_digest = found.decode().strip()
        for what in (["image", "inspect"], ["history", "--no-trunc"]):
            local = subprocess.run(
                ["docker", *what, f"{host}/{repository}:1.0.0"], capture_output=True
            )
            places.add(f"docker {' '.join(what)}", local.stdout + local.stderr)
    lock = (root / "imagectl.lock").read_text() if (root / "imagectl.lock").exists() else ""
    return Story(
        root=root,
        namespace=namespace,
        token=token,
        pem=pem,
        password=password,
        basic=basic,
        remote_password=remote_password,
        wrong_password=wrong_password,
        runs=runs,
        places=places,
        labels=labels,
        token_digest_in_image=token_digest,
        lock=lock,
        pem_digest_in_image=pem_digest,
        sign_passphrase=sign_passphrase,
        sign_key_forms=sign_key_forms,
        tags=tag_names,
    )


def _outputs(story: Story) -> str:
    return "\n".join(
        f"--- {label} (exit {run.returncode})\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        for label, run in story.runs.items()
    )


def test_the_story_ran_as_planned(story: Story) -> None:
    """The commands did what the leak checks assume (else a clean scan proves little)."""
    runs = story.runs
    for label in (
        "validate", "plan", "plan --json", "plan --out", "status", "status --json", "verify",
    ):  # fmt: skip
        assert runs[label].returncode == 0, _outputs(story)
    assert runs["apply"].returncode == 1, _outputs(story)  # broken fails, app is built
    assert "broken failed" in runs["apply"].stdout, _outputs(story)
    assert "app:" in story.lock and "broken:" not in story.lock
    assert runs["plan --refresh"].returncode == 0, _outputs(story)
    assert runs["prune"].returncode == 0, _outputs(story)
    refused = runs["plan --refresh (wrong password)"]
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, _outputs(story)
    assert all("Traceback" not in r.stdout + r.stderr for r in runs.values()), _outputs(story)


def test_signing_key_and_passphrase_never_leak(story: Story) -> None:
    injected = "signing key (SIGN_KEY, cosign's encrypted format) and passphrase (SIGN_PASS)"
    with result("security", "signing key and passphrase", injected) as rec:
        signed = [t for t in story.tags if t.endswith((".sig", ".att"))]
        assert len(signed) == 2, story.tags  # app was signed and attested, and scanned
        assert "ok (tag, signature, provenance)" in story.runs["verify"].stdout
        forms = {"passphrase": story.sign_passphrase, **story.sign_key_forms}
        rec.count = len(story.places.found)
        for form, value in forms.items():
            leaks = story.places.containing(value)
            assert not leaks, f"the signing {form} leaked into {leaks}"
        rec.observed = (
            f"{', '.join(signed)} written and verified; {len(forms)} forms of the key and "
            f"passphrase absent from all {rec.count} places"
        )


def test_registry_password_never_leaks(story: Story) -> None:
    injected = (
        "htpasswd password in $DOCKER_CONFIG/config.json (push, verify, tags, refresh, prune)"
    )
    with result("security", "registry password", injected) as rec:
        assert story.labels, "the pushed image was not read back through auth"
        forms = {"password": story.password, "basic-auth value": story.basic}
        leaks = {form: story.places.containing(value) for form, value in forms.items()}
        rec.count = len(story.places.found)
        assert not any(leaks.values()), leaks
        rec.observed = (
            f"pushed and read through basic auth; absent (raw and base64) from all "
            f"{rec.count} outputs, files, git history, image configs and layers"
        )


def test_refused_password_never_leaks(story: Story) -> None:
    injected = "a wrong password in $DOCKER_CONFIG; plan --refresh gets 401"
    with result("security", "refused password in the error", injected) as rec:
        refused = story.runs["plan --refresh (wrong password)"]
        rec.count = 2
        assert refused.returncode == 1
        assert "401" in refused.stderr or "auth" in refused.stderr.lower(), refused.stderr
        assert story.wrong_password not in refused.stdout + refused.stderr
        assert story.places.containing(story.wrong_password) == []
        rec.observed = f"exit 1: {refused.stderr.strip().splitlines()[0][:160]}; no password"


def test_build_secret_never_leaks(story: Story) -> None:
    injected = "BuildKit secret (env TOK) printed by a RUN step, and by a RUN that then fails"
    with result("security", "build secret", injected) as rec:
        expected = hashlib.sha256(story.token.encode()).hexdigest()
        assert story.token_digest_in_image == expected, "the secret did not reach the build"
        logs = sorted((story.root / ".imagectl" / "logs").rglob("*.log"))
        app_logs = "".join(p.read_text() for p in logs if p.name.startswith("app"))
        assert "secret is [***]" in app_logs, "the printed secret was not redacted in the log"
        apply = story.runs["apply"]
        assert "about to fail with [***]" in apply.stdout + apply.stderr, "no redacted tail"
        leaks = story.places.containing(story.token)
        rec.count = len(story.places.found)
        assert leaks == [], leaks
        rec.observed = (
            f"reached the build (sha256 in the image); shown as *** in the log and the "
            f"failure's tail; absent from all {rec.count} places"
        )


def test_multiline_file_secret_never_leaks_not_even_its_short_last_line(story: Story) -> None:
    injected = (
        "a PEM-like file secret (5 lines, the last base64 line 5 characters) printed by a "
        "RUN step line by line, and again before a RUN fails"
    )
    with result("security", "multi-line file secret", injected) as rec:
        expected = hashlib.sha256(story.pem.encode()).hexdigest()
        assert story.pem_digest_in_image == expected, "the file secret did not reach the build"
        lines = [line for line in story.pem.splitlines() if len(line) >= 4]
        short = story.pem.splitlines()[-2]
        assert len(short) == 5
        logs = sorted((story.root / ".imagectl" / "logs").rglob("*.log"))
        assert "***" in "".join(p.read_text() for p in logs)
        leaks = {line: story.places.containing(line) for line in lines}
        rec.count = len(story.places.found)
        assert not any(leaks.values()), leaks
        rec.observed = (
            f"reached the build (sha256 in the image); each of its {len(lines)} lines, the "
            f"5-character one too, absent from all {rec.count} places"
        )


def test_source_label_and_git_remote_carry_no_credentials(story: Story) -> None:
    injected = f"origin = https://ops:<canary>@{REMOTE_HOST}/x.git"
    with result("security", "git remote credentials", injected) as rec:
        source = story.labels.get("org.opencontainers.image.source")
        assert source == f"https://{REMOTE_HOST}/x.git", source
        leaks = story.places.containing(story.remote_password)
        rec.count = len(story.places.found)
        assert leaks == [], leaks
        rec.observed = f".source label {source}; canary absent from all {rec.count} places"


# ------------------------------------------------------------------------------ lint

LINT_CASES = {
    "build arg declared in the Dockerfile": (
        {"PASSWORD": "arg-canary-1d2e"},
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG PASSWORD\nRUN echo build\nUSER 10001\n",
    ),
    "build arg in the manifest only": (
        {"PASSWORD": "arg-canary-1d2e"},
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo build\nUSER 10001\n",
    ),
    "secret baked into ENV": (
        {},
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENV API_TOKEN=env-canary-5f6a\nUSER 10001\n",
    ),
}


@pytest.mark.parametrize("case", sorted(LINT_CASES))
def test_lint_refuses_secrets_in_build_args_and_env(case: str, tmp_path: Path) -> None:
    args, dockerfile = LINT_CASES[case]
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(dockerfile)
    lines = [
        "version: 1",
        "registry: 127.0.0.1:9/acme",
        "bases:",
        "  upstream:",
        "    ref: 127.0.0.1:9/upstream/busybox:1",
        "families:",
        "  apps:",
        "    from: upstream",
        "    images:",
        "      app:",
        "        context: app",
        '        version: "1.0"',
    ]
    if args:
        lines += ["        args:", *(f'          {k}: "{v}"' for k, v in args.items())]
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    canary = next(iter(args.values()), "env-canary-5f6a")
    with result("security", f"lint: {case}", f"{case}: {canary}") as rec:
        rec.count = 1
        run = run_cli(root, "lint", env=cli_env(DOCKER_CONFIG=str(tmp_path)))
        output = run.stdout + run.stderr
        assert run.returncode == 1, output
        assert "IC207" in output, output
        assert canary not in output, output
        finding = next(line for line in output.splitlines() if "IC207" in line)
        rec.observed = f"lint exit 1: {finding.strip()[:160]}"


# ------------------------------------------------------------------ Dockerfile frontends


def test_builds_follow_only_the_frontend_the_plan_pinned(
    tmp_path: Path, registry: Registry, proxy: FaultProxy, upstream: UpstreamFactory
) -> None:
    """`# syntax=` by tag: lint refuses it, plan pins its digest, the build runs that digest.

    No Dockerfile frontend image exists offline, so the frontend is a plain image: the
    docker build fails when it tries to run it, after fetching it. The fetch is what is
    checked: through the proxy, only by the digest the saved plan pinned, never by tag,
    although the tag moved between plan and apply.
    """
    injected = "# syntax=<registry>/fe/dockerfile:1, the tag moved between plan and apply"
    with result("security", "Dockerfile frontend by tag", injected) as rec:
        upstream("frontend-test")
        frontend = f"fe/dockerfile-{uuid.uuid4().hex[:8]}"
        first = push_upstream_base(registry.host, frontend, "1", "frontend v1")
        dockerfile = (
            f"# syntax={proxy.host}/{frontend}:1\n"
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo built\nUSER 10001\n"
        )
        repo = write_repo(
            tmp_path / "repo",
            registry,
            registry.host,
            base_ref(registry.host, upstream),
            {"app": "upstream"},
            dockerfiles={"app": dockerfile},
        )
        lint = repo.run("lint")
        assert lint.returncode == 1 and "IC213" in lint.stdout, lint.stdout + lint.stderr
        repo.ok("plan", "--out", "first.json")
        saved = json.loads((repo.root / "first.json").read_text())
        (action,) = saved["actions"]
        assert action["frontend"] == f"{proxy.host}/{frontend}:1@{first}"

        second = push_upstream_base(registry.host, frontend, "1", "frontend v2")
        assert second != first
        repo.ok("plan", "--out", "second.json")
        (moved,) = json.loads((repo.root / "second.json").read_text())["actions"]
        assert moved["frontend"].endswith(second) and moved["inputs"] != action["inputs"]

        proxy.reset_log()
        applied = repo.run("apply", "first.json")
        assert applied.returncode == 1, applied.stdout + applied.stderr  # not a real frontend
        fetched = proxy.requests(path=f"/v2/{frontend}/manifests/", agent="")
        paths = sorted({seen.path.rsplit("/", 1)[-1] for seen in fetched})
        rec.count = len(fetched)
        assert paths == [first], paths
        rec.observed = (
            f"lint IC213; plan pinned {first[:19]}… and re-pinned when the tag moved; the "
            f"build fetched the frontend {len(fetched)}x, only by the planned digest"
        )
