"""`bases check` / `bases update --commit` against the real registry and real git."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from devenv.registry import RegistryServer
from imagectl.bases import EXIT_BEHIND, bases_check_command, bases_update_command
from imagectl.errors import GitOpsError, RegistryError
from imagectl.manifest.loader import load_manifest
from imagectl.registry import RegistryClient, StaticCredentials
from tests.fixtures.oci import push_image

pytestmark = pytest.mark.integration

SETUP = ("-c", "user.name=Setup", "-c", "user.email=setup@example.test")

FAMILY = """\
# The runtime family. Its base is pinned: updates arrive as reviewed commits.
bases:
  debian:   # pinned
    ref: '{pinned}'

  busybox: {{ref: "{followed}"}}   # followed by tag

families:
  runtime:
    from: debian
    images:
      base:
        context: ../images/base
        version: "1.4"     # the version line
      tools: {{context: ../images/base, version: '2.0', from: busybox}}
"""


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(credentials=StaticCredentials({})) as client:
        yield client


@pytest.fixture
def http(registry: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        yield client


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *SETUP, *args], cwd=cwd, check=True, capture_output=True)
    return done.stdout.decode().strip()


class Repo:
    """A git-ops repository whose included family file pins an upstream base."""

    def __init__(self, tmp: Path, registry: RegistryServer, repo: str, digest: str) -> None:
        self.dir = tmp / "gitops"
        (self.dir / "images" / "base").mkdir(parents=True)
        (self.dir / "images" / "base" / "Dockerfile").write_text(
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        )
        (self.dir / "families").mkdir()
        self.root = self.dir / "imagectl.yaml"
        self.root.write_text(
            f'version: 1\nregistry: {registry.host}/{repo}/acme\ninclude: ["families/*.yaml"]\n'
        )
        self.family = self.dir / "families" / "runtime.yaml"
        self.tag_ref = f"{registry.host}/{repo}/debian:bookworm-slim"
        followed = f"{registry.host}/{repo}/busybox:1.36"
        self.family.write_text(FAMILY.format(pinned=f"{self.tag_ref}@{digest}", followed=followed))
        git(self.dir, "init", "-q", "-b", "main")
        git(self.dir, "add", ".")
        git(self.dir, "commit", "-q", "-m", "initial")

    def commits(self) -> int:
        return int(git(self.dir, "rev-list", "--count", "HEAD"))


def run(command: object, repo: Repo, client: RegistryClient, **options: bool) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    manifest = load_manifest(repo.root)
    if command is bases_check_command:
        code = bases_check_command(manifest, console=console, client=client)
    else:
        code = bases_update_command(
            manifest, commit=options.get("commit", False), console=console, client=client
        )
    return code, buffer.getvalue()


def test_a_moved_tag_is_reported_then_updated_in_one_reviewed_commit(
    tmp_path: Path, registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    first = push_image(http, f"{repo}/debian", "bookworm-slim", {"v": "1"}, content="v1")
    push_image(http, f"{repo}/busybox", "1.36", {}, content="bb")
    gitops = Repo(tmp_path, registry, repo, first.digest)
    before = gitops.family.read_bytes()

    code, output = run(bases_check_command, gitops, client)
    assert code == 0, output
    assert "The pinned base is current." in output
    assert "followed" in output

    second = push_image(http, f"{repo}/debian", "bookworm-slim", {"v": "2"}, content="v2")
    code, output = run(bases_check_command, gitops, client)
    assert code == EXIT_BEHIND
    assert "1 pinned base behind: debian" in output
    assert "behind" in output and second.digest[:19] in output

    code, output = run(bases_update_command, gitops, client, commit=True)
    assert code == 0, output
    after = gitops.family.read_bytes()
    assert after == before.replace(first.digest.encode(), second.digest.encode())
    assert after != before
    assert gitops.commits() == 2
    message = git(gitops.dir, "log", "-1", "--format=%B")
    assert message.startswith("imagectl: update pinned base debian")
    assert f"debian {first.digest[:19]} -> {second.digest[:19]}" in message
    assert git(gitops.dir, "show", "--name-only", "--format=", "HEAD") == "families/runtime.yaml"
    assert git(gitops.dir, "status", "--porcelain") == ""
    diff = git(gitops.dir, "diff", "-U0", "HEAD~1", "HEAD")
    removed = [ln for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert removed == [f"-    ref: '{gitops.tag_ref}@{first.digest}'"]
    assert added == [f"+    ref: '{gitops.tag_ref}@{second.digest}'"]

    code, output = run(bases_check_command, gitops, client)
    assert code == 0 and "The pinned base is current." in output
    code, output = run(bases_update_command, gitops, client, commit=True)
    assert code == 0 and "The pinned base is current; nothing to update." in output
    assert gitops.commits() == 2

    validate = subprocess.run(
        [sys.executable, "-m", "imagectl", "--file", str(gitops.root), "validate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stderr
    assert "ok: 2 images" in validate.stdout


def test_commit_refuses_a_file_with_uncommitted_changes_and_writes_nothing(
    tmp_path: Path, registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    first = push_image(http, f"{repo}/debian", "bookworm-slim", {"v": "1"}, content="v1")
    push_image(http, f"{repo}/busybox", "1.36", {}, content="bb")
    gitops = Repo(tmp_path, registry, repo, first.digest)
    push_image(http, f"{repo}/debian", "bookworm-slim", {"v": "2"}, content="v2")
    edited = gitops.family.read_text() + "# a local edit\n"
    gitops.family.write_text(edited)
    with pytest.raises(GitOpsError, match="uncommitted changes"):
        run(bases_update_command, gitops, client, commit=True)
    assert gitops.family.read_text() == edited
    # without --commit the file is updated and left for the user to commit
    code, output = run(bases_update_command, gitops, client)
    assert code == 0 and "Updated 1 pinned reference" in output
    assert gitops.family.read_text() != edited and gitops.commits() == 1


def test_a_pinned_tag_that_does_not_exist_is_an_error(
    tmp_path: Path, registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    first = push_image(http, f"{repo}/elsewhere", "x", {}, content="v1")
    push_image(http, f"{repo}/busybox", "1.36", {}, content="bb")
    gitops = Repo(tmp_path, registry, repo, first.digest)
    with pytest.raises(RegistryError, match="bookworm-slim not found"):
        run(bases_check_command, gitops, client)


def test_without_pinned_bases_check_says_there_are_none(
    tmp_path: Path, registry: RegistryServer, repo: str, http: httpx.Client, client: RegistryClient
) -> None:
    first = push_image(http, f"{repo}/debian", "bookworm-slim", {}, content="v1")
    push_image(http, f"{repo}/busybox", "1.36", {}, content="bb")
    gitops = Repo(tmp_path, registry, repo, first.digest)
    gitops.family.write_text(gitops.family.read_text().replace(f"@{first.digest}", ""))

    code, output = run(bases_check_command, gitops, client)
    assert code == 0, output
    assert "All 0" not in output
    assert "No pinned bases: every base follows its tag." in output
    code, output = run(bases_update_command, gitops, client)
    assert code == 0 and "No pinned bases: every base follows its tag; nothing to update." in output
