"""gitops against real git repositories and bare remotes in tmp dirs."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from imagectl.errors import GitOpsError
from imagectl.gitops import (
    changed_files,
    check_pushable,
    commit_files,
    commit_message,
    fetch,
    find_worktree,
    head_revision,
    is_ancestor,
    is_dirty,
    is_tracked,
    push,
    rewind_to_upstream,
    sanitize_url,
    source_url,
    sync,
    unpushed,
)

pytestmark = pytest.mark.integration

CANARY = "canary-Pa55w0rd-7f3a9c"
SETUP = ("-c", "user.name=Setup", "-c", "user.email=setup@example.test")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global/system config or identity from the machine running the tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for var in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
    ):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *SETUP, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def init(path: Path, *, commit: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if commit:
        (path / "README.md").write_text("hello\n")
        git(path, "add", "README.md")
        git(path, "commit", "-q", "-m", "initial")
    return path


def committed_files(repo: Path, rev: str = "HEAD") -> list[str]:
    return git(repo, "show", "--name-only", "--format=", rev).splitlines()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init(tmp_path / "repo")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    return bare


def clone(remote: Path, dest: Path) -> Path:
    git(remote.parent, "clone", "-q", str(remote), str(dest))
    return dest


# --- discovery ------------------------------------------------------------


def test_find_worktree_from_subdir_file_and_future_file(repo: Path, tmp_path: Path) -> None:
    (repo / "sub" / "deeper").mkdir(parents=True)
    top = repo.resolve()
    assert find_worktree(repo) == top
    assert find_worktree(repo / "sub" / "deeper") == top
    assert find_worktree(repo / "README.md") == top
    assert find_worktree(repo / "sub" / "imagectl.lock") == top
    outside = tmp_path / "plain"
    outside.mkdir()
    assert find_worktree(outside) is None


def test_head_revision_none_before_first_commit(tmp_path: Path) -> None:
    empty = init(tmp_path / "empty", commit=False)
    assert head_revision(empty) is None
    (empty / "a").write_text("a")
    git(empty, "add", "a")
    git(empty, "commit", "-q", "-m", "a")
    sha = head_revision(empty)
    assert sha == git(empty, "rev-parse", "HEAD")
    assert sha is not None and len(sha) == 40


def test_not_a_repository_is_gitops_error(tmp_path: Path) -> None:
    with pytest.raises(GitOpsError, match="not a git work tree"):
        head_revision(tmp_path)


def test_is_dirty_per_path(repo: Path) -> None:
    (repo / ".gitignore").write_text("ignored.txt\n")
    (repo / "lock").write_text("v1\n")
    git(repo, "add", ".gitignore", "lock")
    git(repo, "commit", "-q", "-m", "lock")
    assert not is_dirty(repo, [Path("lock")])
    assert not is_dirty(repo, [])

    (repo / "ignored.txt").write_text("x")
    assert not is_dirty(repo, [])
    (repo / "README.md").write_text("changed\n")
    assert not is_dirty(repo, [Path("lock")])
    assert is_dirty(repo, [repo / "README.md"])
    assert is_dirty(repo, [])  # empty means the whole work tree

    (repo / "new.yaml").write_text("x")
    assert is_dirty(repo, [Path("new.yaml")])
    (repo / "lock").write_text("v2\n")
    git(repo, "add", "lock")
    (repo / "lock").write_text("v1\n")  # staged change, work tree back to HEAD
    assert is_dirty(repo, [Path("lock")])


def test_changed_files_names_modified_staged_deleted_untracked_not_ignored(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "ctx").mkdir()
    for name in ("a", "b", "c", "d"):
        (repo / "ctx" / name).write_text(name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ctx")
    assert changed_files(repo, [repo / "ctx"]) == []
    (repo / "ctx" / "a").write_text("changed")  # modified
    (repo / "ctx" / "b").write_text("staged")
    git(repo, "add", "ctx/b")
    (repo / "ctx" / "c").unlink()  # deleted
    git(repo, "mv", "ctx/d", "ctx/e")  # renamed: both names count
    (repo / "ctx" / "new file").write_text("x")  # untracked, odd name
    (repo / "ctx" / "build.log").write_text("x")  # ignored
    (repo / "README.md").write_text("outside the paths asked about\n")
    assert changed_files(repo, [repo / "ctx"]) == [
        "ctx/a",
        "ctx/b",
        "ctx/c",
        "ctx/d",
        "ctx/e",
        "ctx/new file",
    ]
    assert "README.md" in changed_files(repo, [])
    assert is_tracked(repo, repo / "ctx" / "a") and not is_tracked(repo, repo / "ctx" / "x")


# --- commit ---------------------------------------------------------------


def test_commit_message_shape() -> None:
    msg = commit_message("imagectl: apply 2 images", ["base 1.4.2 -> 1.4.3 (base-updated)", "py"])
    assert msg == "imagectl: apply 2 images\n\nbase 1.4.2 -> 1.4.3 (base-updated)\npy"
    assert commit_message("title only", []) == "title only"


def test_commits_only_the_lock_leaving_other_staged_changes_staged(repo: Path) -> None:
    (repo / "other.txt").write_text("staged by the user\n")
    git(repo, "add", "other.txt")
    (repo / "README.md").write_text("unstaged edit\n")
    (repo / "imagectl.lock").write_text("lock v1\n")
    before = git(repo, "rev-parse", "HEAD")

    message = commit_message("imagectl: apply", ["base 1.0.0 -> 1.0.1 (base-updated)"])
    sha = commit_files(repo, [repo / "imagectl.lock"], message)

    assert sha == git(repo, "rev-parse", "HEAD")
    assert git(repo, "rev-parse", "HEAD~1") == before
    assert committed_files(repo) == ["imagectl.lock"]
    assert git(repo, "log", "-1", "--format=%B") == message
    assert git(repo, "diff", "--cached", "--name-only") == "other.txt"
    assert git(repo, "diff", "--name-only") == "README.md"
    assert git(repo, "show", "HEAD:imagectl.lock") == "lock v1"


def test_author_defaults_to_imagectl_without_git_identity(repo: Path) -> None:
    (repo / "imagectl.lock").write_text("x\n")
    commit_files(repo, [Path("imagectl.lock")], "m")
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "imagectl <imagectl@localhost>|imagectl <imagectl@localhost>"
    )


def test_author_from_git_config_then_explicit_override(repo: Path) -> None:
    git(repo, "config", "user.name", "Ops Team")
    git(repo, "config", "user.email", "ops@example.test")
    (repo / "imagectl.lock").write_text("1\n")
    commit_files(repo, [Path("imagectl.lock")], "m1")
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "Ops Team <ops@example.test>"

    (repo / "imagectl.lock").write_text("2\n")
    commit_files(repo, [Path("imagectl.lock")], "m2", author=("Bot", "bot@example.test"))
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Bot <bot@example.test>|Ops Team <ops@example.test>"
    )


def test_commit_in_repository_without_any_commit(tmp_path: Path) -> None:
    empty = init(tmp_path / "empty", commit=False)
    (empty / "staged.txt").write_text("x")
    git(empty, "add", "staged.txt")
    (empty / "imagectl.lock").write_text("first\n")
    sha = commit_files(empty, [Path("imagectl.lock")], "first lock")
    assert sha is not None and sha == head_revision(empty)
    assert committed_files(empty) == ["imagectl.lock"]
    assert git(empty, "diff", "--cached", "--name-only") == "staged.txt"


def test_nothing_changed_returns_none_and_makes_no_commit(repo: Path) -> None:
    (repo / "imagectl.lock").write_text("same\n")
    assert commit_files(repo, [Path("imagectl.lock")], "m") is not None
    head = git(repo, "rev-parse", "HEAD")
    (repo / "other.txt").write_text("x")
    git(repo, "add", "other.txt")
    assert commit_files(repo, [Path("imagectl.lock")], "m") is None
    assert commit_files(repo, [Path("never-existed.lock")], "m") is None
    assert commit_files(repo, [], "m") is None
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "diff", "--cached", "--name-only") == "other.txt"


def test_deleted_file_is_committed_as_deletion(repo: Path) -> None:
    (repo / "imagectl.lock").write_text("x\n")
    commit_files(repo, [Path("imagectl.lock")], "add")
    (repo / "imagectl.lock").unlink()
    assert commit_files(repo, [repo / "imagectl.lock"], "remove") is not None
    assert git(repo, "show", "--name-status", "--format=", "HEAD") == "D\timagectl.lock"


def test_file_outside_worktree_is_refused(repo: Path, tmp_path: Path) -> None:
    outsider = tmp_path / "outside.lock"
    outsider.write_text("x")
    with pytest.raises(GitOpsError, match="outside the git work tree"):
        commit_files(repo, [outsider], "m")


def test_ignored_file_is_a_gitops_error(repo: Path) -> None:
    (repo / ".gitignore").write_text("imagectl.lock\n")
    (repo / "imagectl.lock").write_text("x")
    with pytest.raises(GitOpsError, match=r"imagectl\.lock is ignored by git.*--no-git"):
        commit_files(repo, [Path("imagectl.lock")], "m")


# --- push -----------------------------------------------------------------


def test_push_sets_upstream_on_origin_then_follows_it(remote: Path, tmp_path: Path) -> None:
    work = init(tmp_path / "work")
    git(work, "remote", "add", "origin", str(remote))
    push(work)
    assert git(remote, "rev-parse", "main") == git(work, "rev-parse", "HEAD")
    assert git(work, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"

    (work / "imagectl.lock").write_text("x")
    sha = commit_files(work, [Path("imagectl.lock")], "lock")
    push(work)
    assert git(remote, "rev-parse", "main") == sha


def test_push_when_remote_moved_fails_clearly_and_never_forces(
    remote: Path, tmp_path: Path
) -> None:
    seed = init(tmp_path / "seed")
    git(seed, "push", "-q", str(remote), "main")
    alice = clone(remote, tmp_path / "alice")
    bob = clone(remote, tmp_path / "bob")

    (alice / "a.txt").write_text("alice")
    alice_sha = commit_files(alice, [Path("a.txt")], "alice")
    push(alice)

    (bob / "imagectl.lock").write_text("bob")
    commit_files(bob, [Path("imagectl.lock")], "bob")
    with pytest.raises(GitOpsError) as caught:
        push(bob)
    message = str(caught.value)
    assert "rejected" in message and "remote moved" in message
    assert "git pull --rebase" in message and "re-run" in message
    assert git(remote, "rev-parse", "main") == alice_sha


def test_push_error_never_contains_remote_password(remote: Path, tmp_path: Path) -> None:
    """The remote URL carries a canary password; git reaches the real bare repo via
    insteadOf, so the push truly runs and is rejected as non-fast-forward."""
    seed = init(tmp_path / "seed")
    git(seed, "push", "-q", str(remote), "main")
    alice = clone(remote, tmp_path / "alice")
    (alice / "a.txt").write_text("alice")
    commit_files(alice, [Path("a.txt")], "alice")
    push(alice)

    secret_base = f"https://deploy:{CANARY}@git.example.test/"
    bob = init(tmp_path / "bob", commit=False)
    git(bob, "config", f"url.{remote.parent.as_uri()}/.insteadOf", secret_base)
    git(bob, "remote", "add", "origin", f"{secret_base}{remote.name}")
    (bob / "imagectl.lock").write_text("bob")
    commit_files(bob, [Path("imagectl.lock")], "bob")
    with pytest.raises(GitOpsError) as caught:
        push(bob)
    assert "rejected" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert "origin (https://git.example.test/remote.git)" in str(caught.value)
    assert source_url(bob) == "https://git.example.test/remote.git"


def test_push_connection_error_never_contains_remote_password(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = init(tmp_path / "work")
    url = f"http://bot:{CANARY}@127.0.0.1:{port}/x.git?access_token={CANARY}"
    git(work, "remote", "add", "origin", url)
    with pytest.raises(GitOpsError) as caught:
        push(work)
    assert "git push to origin (http://127.0.0.1:" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_push_without_remote_or_branch_says_what_to_do(repo: Path) -> None:
    for attempt in (push, check_pushable):
        with pytest.raises(GitOpsError, match="git remote add origin"):
            attempt(repo)
    git(repo, "checkout", "-q", "--detach")
    for attempt in (push, check_pushable):
        with pytest.raises(GitOpsError, match="detached"):
            attempt(repo)


# --- source URL -----------------------------------------------------------


def test_source_url_prefers_upstream_remote_over_origin(repo: Path) -> None:
    assert source_url(repo) is None
    git(repo, "remote", "add", "origin", f"https://x-access-token:{CANARY}@github.com/acme/o.git")
    assert source_url(repo) == "https://github.com/acme/o.git"
    git(repo, "remote", "add", "upstream", "git@github.com:acme/ops.git")
    git(repo, "config", "branch.main.remote", "upstream")
    git(repo, "config", "branch.main.merge", "refs/heads/main")
    assert source_url(repo) == "git@github.com:acme/ops.git"


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:tok@host/x.git", "https://host/x.git"),
        ("https://tok@host/x.git", "https://host/x.git"),
        ("https://x-access-token:ghs_abc@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("http://u:p@127.0.0.1:5000/x.git", "http://127.0.0.1:5000/x.git"),
        ("https://u:p@[::1]:8443/x.git", "https://[::1]:8443/x.git"),
        ("https://u:p%40ss@host/x.git", "https://host/x.git"),
        ("https://u:p@ss@host/x.git", "https://host/x.git"),
        ("https://host/x.git?private_token=abc", "https://host/x.git"),
        ("https://host/x.git?a=1&access_token=abc#frag", "https://host/x.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("git:secret@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("github.com:org/repo.git", "github.com:org/repo.git"),
        ("ssh://git@host:22/org/repo.git", "ssh://git@host:22/org/repo.git"),
        ("ssh://git:pw@host/org/repo.git", "ssh://git@host/org/repo.git"),
        ("git+ssh://git@host/r.git", "git+ssh://git@host/r.git"),
        ("git://host/r.git", "git://host/r.git"),
        ("git::https://u:p@host/r.git", "git::https://host/r.git"),
        ("file:///srv/git/r.git", "file:///srv/git/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
        ("../r.git", "../r.git"),
    ],
)
def test_sanitize_url(url: str, clean: str) -> None:
    assert sanitize_url(url) == clean


# --- pull: fetch, fast-forward, divergence --------------------------------


def two_clones(remote: Path, tmp_path: Path) -> tuple[Path, Path]:
    seed = init(tmp_path / "seed")
    git(seed, "push", "-q", str(remote), "main")
    return clone(remote, tmp_path / "alice"), clone(remote, tmp_path / "bob")


def commit_new(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    sha = commit_files(repo, [Path(name)], name)
    assert sha is not None
    return sha


def test_sync_fast_forwards_and_reports_ahead(remote: Path, tmp_path: Path) -> None:
    alice, bob = two_clones(remote, tmp_path)
    assert sync(bob).describe() == "origin/main: up to date"
    pushed = commit_new(alice, "a.txt")
    push(alice)
    synced = sync(bob)
    assert (synced.upstream, synced.pulled, synced.ahead) == ("origin/main", 1, 0)
    assert head_revision(bob) == pushed and (bob / "a.txt").read_text() == "a.txt"
    assert not unpushed(bob)
    commit_new(bob, "b.txt")
    assert unpushed(bob)
    synced = sync(bob)
    assert (synced.pulled, synced.ahead) == (0, 1)
    assert synced.describe() == "origin/main: 1 local commit to push"


def test_sync_refuses_a_diverged_branch_and_changes_nothing(remote: Path, tmp_path: Path) -> None:
    alice, bob = two_clones(remote, tmp_path)
    commit_new(alice, "a.txt")
    push(alice)
    mine = commit_new(bob, "b.txt")
    with pytest.raises(GitOpsError, match="diverged") as caught:
        sync(bob)
    assert "never merges or forces" in str(caught.value)
    assert head_revision(bob) == mine
    assert git(remote, "rev-parse", "main") == head_revision(alice)


def test_sync_without_upstream_or_on_a_detached_head_does_nothing(repo: Path) -> None:
    assert sync(repo).upstream is None
    assert fetch(repo) is None
    git(repo, "checkout", "-q", "--detach")
    assert sync(repo).describe() == "no upstream branch to pull from"


def test_rewind_drops_only_our_commits_then_fast_forwards(remote: Path, tmp_path: Path) -> None:
    alice, bob = two_clones(remote, tmp_path)
    theirs = commit_new(alice, "a.txt")
    push(alice)
    ours = commit_new(bob, "imagectl.lock")
    with pytest.raises(GitOpsError):
        push(bob)
    assert rewind_to_upstream(bob, [ours]) == theirs
    assert not (bob / "imagectl.lock").exists() and (bob / "a.txt").exists()
    assert is_ancestor(bob, "origin/main", "HEAD") and not unpushed(bob)

    commit_new(alice, "c.txt")
    push(alice)
    foreign = commit_new(bob, "d.txt")  # not this run's: refused, nothing rewound
    with pytest.raises(GitOpsError, match="commit\\(s\\) of its own"):
        rewind_to_upstream(bob, [])
    assert head_revision(bob) == foreign


# --- provenance: the clean-tree check ---------------------------------------


def test_uncommitted_inputs_are_those_of_the_planned_images_only(tmp_path: Path) -> None:
    from imagectl.apply.provenance import check_committed, run_revision, uncommitted
    from imagectl.manifest.loader import load_manifest
    from imagectl.plan.model import Plan
    from tests.unit.test_claims import action

    repo = init(tmp_path / "gitops")
    lines = ["version: 1", "registry: reg.test/acme", "bases:", "  up:", "    ref: reg.test/up:1"]
    lines += ["families:", "  all:", "    images:"]
    for name in ("alpha", "beta"):
        (repo / name).mkdir()
        (repo / name / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
        lines += [f"      {name}: {{from: up, context: {name}, version: '1.0'}}"]
    (repo / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "manifest")
    manifest = load_manifest(repo / "imagectl.yaml")
    plan = Plan(actions=(action("alpha"),), unchanged=("beta",))
    assert uncommitted(repo, manifest, plan) == []

    (repo / "imagectl.lock").write_text("format: 1\n")  # the lock never counts
    (repo / ".imagectl").mkdir(exist_ok=True)
    (repo / ".imagectl" / "state.json").write_text("x")  # nor imagectl's own state
    (repo / "beta" / "new.txt").write_text("x")  # beta is not in this plan
    assert uncommitted(repo, manifest, plan) == []
    assert check_committed(repo, manifest, plan, allow_dirty=False) is False

    (repo / "alpha" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN x\n")
    assert uncommitted(repo, manifest, plan) == ["alpha/Dockerfile"]
    with pytest.raises(GitOpsError, match="alpha/Dockerfile") as caught:
        check_committed(repo, manifest, plan, allow_dirty=False)
    assert "--allow-dirty" in str(caught.value)
    assert check_committed(repo, manifest, plan, allow_dirty=True) is True
    assert run_revision(repo, True) == f"{head_revision(repo)}-dirty"
    assert check_committed(None, manifest, plan, allow_dirty=False) is False  # outside git
