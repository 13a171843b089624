"""Git at the edge: find the git-ops work tree, commit the lock, push, name the source.

Everything goes through GitPython (``Repo`` for discovery and config, ``repo.git`` for
the porcelain commands whose exact semantics we rely on, such as ``commit --only``).
GitPython failures become :class:`~imagectl.errors.GitOpsError`, and every remote URL
or git message that reaches an error is passed through :func:`sanitize_url` first:
credentials never leave this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import git
from git.exc import GitError, InvalidGitRepositoryError, NoSuchPathError

from imagectl.errors import GitOpsError

DEFAULT_AUTHOR = ("imagectl", "imagectl@localhost")

# `<transport>::<address>` is git's remote-helper syntax (e.g. `git::https://...`).
_SCHEME_URL = re.compile(
    r"^(?P<helper>(?:[A-Za-z][A-Za-z0-9+.\-]*::)?)"
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$",
    re.DOTALL,
)
_SCP_URL = re.compile(r"^(?P<user>[^@/]*)@(?P<rest>[^/]*:.*)$", re.DOTALL)
_URL_IN_TEXT = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*::)?[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
# Never prompt: a push from cron or CI must fail, not hang on a password prompt.
_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}


def sanitize_url(url: str) -> str:
    """Remove credentials from a git remote URL.

    ``https://user:token@host/x.git`` and ``https://token@host/x.git`` become
    ``https://host/x.git``; a query string or fragment (where tokens such as
    ``?private_token=`` ride) is dropped. An ssh user name is not a secret and is kept
    (``git@host:org/repo.git``, ``ssh://git@host/x``), only a password is removed.
    Local paths are returned unchanged.

    Args:
        url: A remote URL in any form git accepts.

    Returns:
        The URL without secrets.
    """
    match = _SCHEME_URL.match(url)
    if match is None:
        scp = _SCP_URL.match(url)
        if scp is None:
            return url
        user = scp["user"].partition(":")[0]
        return f"{user}@{scp['rest']}" if user else scp["rest"]
    scheme, authority = match["scheme"], match["authority"]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        keep_user = scheme.lower() in _SSH_SCHEMES and user
        authority = f"{user}@{hostport}" if keep_user else hostport
    path = re.split(r"[?#]", match["rest"], maxsplit=1)[0]
    return f"{match['helper']}{scheme}://{authority}{path}"


def commit_message(title: str, lines: Sequence[str]) -> str:
    """Shape a commit message: the title, a blank line, then one line each.

    Args:
        title: The subject line.
        lines: Body lines; with none, the message is the title alone.

    Returns:
        The message text, without a trailing newline.
    """
    title = title.strip()
    if not lines:
        return title
    return title + "\n\n" + "\n".join(line.rstrip() for line in lines)


def find_worktree(path: Path) -> Path | None:
    """Find the git work tree that contains ``path``.

    Args:
        path: A file or directory; it need not exist yet (the lock before the first apply).

    Returns:
        The top directory of the work tree, or None outside any (or in a bare) repository.
    """
    probe = path.resolve()
    while not probe.is_dir():
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        repo = git.Repo(probe, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        return None
    try:
        top = repo.working_tree_dir
    finally:
        repo.close()
    return Path(top) if top is not None else None


def head_revision(worktree: Path) -> str | None:
    """Return the full commit sha of HEAD, or None in a repository without a commit."""
    status, out, _ = _run(_open(worktree), ["rev-parse", "--verify", "-q", "HEAD^{commit}"])
    return out.strip() if status == 0 and out.strip() else None


def is_dirty(worktree: Path, paths: Sequence[Path]) -> bool:
    """Tell whether any of ``paths`` differ from HEAD (staged, unstaged or untracked).

    Args:
        worktree: The work tree top.
        paths: Files or directories, absolute or relative to the work tree. Empty
            means the whole work tree, as with git pathspecs. Ignored files never count.

    Returns:
        True when ``git status`` reports anything for those paths.
    """
    return bool(changed_files(worktree, paths))


def changed_files(worktree: Path, paths: Sequence[Path]) -> list[str]:
    """The files under ``paths`` that differ from HEAD: modified, staged, deleted or untracked.

    Ignored files never count (git's own ignore rules: ``.gitignore``, ``info/exclude``,
    ``core.excludesFile``).

    Args:
        worktree: The work tree top.
        paths: Files or directories, absolute or relative to the work tree; empty
            means the whole work tree.

    Returns:
        Their paths relative to the work tree (``/``-separated), sorted, each once.
    """
    repo = _open(worktree)
    rel = [str(p) for p in _relative(repo, paths)]
    out = _check(
        repo,
        ["--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=all", "--", *rel],
        "git status",
    )
    found: set[str] = set()
    entries = iter(out.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        found.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy: the source path follows
            found.add(next(entries, ""))
    found.discard("")
    return sorted(found)


def source_url(worktree: Path) -> str | None:
    """Return the sanitized URL of the current branch's upstream remote, else ``origin``.

    Args:
        worktree: The work tree top.

    Returns:
        The URL without credentials, or None when neither remote is configured.
    """
    repo = _open(worktree)
    branch = _current_branch(repo)
    remote = _upstream(repo, branch)[0] if branch else None
    url = _remote_url(repo, remote) if remote else None
    if url is None:
        url = _remote_url(repo, "origin")
    return sanitize_url(url) if url is not None else None


def commit_files(
    worktree: Path,
    files: Sequence[Path],
    message: str,
    author: tuple[str, str] | None = None,
) -> str | None:
    """Stage exactly ``files`` and commit them, and only them, in one commit.

    Changes the user already staged for other paths stay staged and out of the commit
    (``git commit --only``). Deleted files are committed as deletions. Hooks are not
    run: the content is machine-written and already pushed to the registry, and a hook
    failing now would leave the registry ahead of git.

    Args:
        worktree: The work tree top.
        files: Paths, absolute or relative to the work tree.
        message: The full commit message (see :func:`commit_message`).
        author: ``(name, email)``; default: git's configured identity, else
            ``imagectl <imagectl@localhost>``.

    Returns:
        The new commit's sha, or None when none of the files changed.

    Raises:
        GitOpsError: A path lies outside the work tree, is ignored by git, or git failed.
    """
    repo = _open(worktree)
    top = _top(repo)
    rel = _relative(repo, files)
    tracked = set(
        _check(repo, ["ls-files", "-z", "--", *map(str, rel)], "git ls-files").split("\0")
    )
    # A path that neither exists nor is tracked has nothing to commit; git would
    # refuse it as an unknown pathspec.
    paths = [str(p) for p in rel if (top / p).exists() or p.as_posix() in tracked]
    if not paths:
        return None
    status, _, err = _run(repo, ["add", "--all", "--", *paths])
    if status != 0 and "ignored" in err:
        raise GitOpsError(
            f"{', '.join(paths)} is ignored by git (.gitignore in {top}); stop ignoring it "
            "to have it committed, or run apply with --no-git"
        )
    if status != 0:
        raise GitOpsError(f"git add in {top} failed: {_detail(err)}")
    status, _, err = _run(repo, ["diff", "--cached", "--quiet", "--", *paths])
    if status == 0:
        return None
    if status != 1:
        raise GitOpsError(f"git diff in {top} failed: {_detail(err)}")
    commit = ["commit", "--no-verify", "--quiet", "--cleanup=whitespace", "--only"]
    env = _identity_env(repo, author)
    _check(repo, [*commit, "-m", message, "--", *paths], "git commit", env=env)
    return _check(repo, ["rev-parse", "HEAD"], "git rev-parse").strip()


def check_pushable(worktree: Path) -> None:
    """Fail early, before anything is committed or built, when :func:`push` cannot work.

    Raises:
        GitOpsError: Detached HEAD, or neither an upstream nor an ``origin`` remote.
    """
    _push_target(_open(worktree))


def _push_target(repo: git.Repo) -> tuple[str, str, str, bool]:
    """(branch, remote, remote ref, whether the push sets the upstream)."""
    top = _top(repo)
    branch = _current_branch(repo)
    if branch is None:
        raise GitOpsError(f"cannot push from {top}: HEAD is detached; check out a branch first")
    remote, merge = _upstream(repo, branch)
    if remote is not None and merge is not None:
        return branch, remote, merge, False
    if _remote_url(repo, "origin") is None:
        raise GitOpsError(
            f"cannot push {branch} from {top}: it has no upstream and there is no "
            "'origin' remote; add one with `git remote add origin URL`"
        )
    return branch, "origin", f"refs/heads/{branch}", True


def push(worktree: Path) -> None:
    """Push the current branch to its upstream, or to ``origin`` setting the upstream.

    Never forces: the refspec carries no ``+`` and configured push refspecs are not
    used. Git never prompts for a password.

    Args:
        worktree: The work tree top.

    Raises:
        GitOpsError: Detached HEAD, no commit, no remote, the remote moved on
            (non-fast-forward: pull with rebase, then re-run) or any other push failure.
            Remote URLs in the message carry no credentials.
    """
    repo = _open(worktree)
    top = _top(repo)
    branch, remote, merge, set_upstream = _push_target(repo)
    if head_revision(top) is None:
        raise GitOpsError(f"nothing to push from {top}: branch {branch} has no commit yet")
    args = ["push", "--porcelain", *(["--set-upstream"] if set_upstream else [])]
    args += [remote, f"refs/heads/{branch}:{merge}"]
    status, out, err = _run(repo, args, env=_NO_PROMPT)
    if status == 0:
        return
    secrets = _secrets(_remote_url(repo, remote) or remote)
    where = _redact(f"{remote} ({sanitize_url(_remote_url(repo, remote) or remote)})", secrets)
    target = merge.removeprefix("refs/heads/")
    if "(fetch first)" in out or "(non-fast-forward)" in out:
        raise GitOpsError(
            f"git push to {where} was rejected: the remote moved (its {target} has commits "
            f"your local {branch} does not; someone pushed since your last pull). Nothing "
            f"was forced. Run `git pull --rebase` in {top}, then re-run."
        )
    rejected = [line for line in out.splitlines() if line.startswith("!")]
    raise GitOpsError(
        _redact(f"git push to {where} failed: {_detail(chr(10).join([*rejected, err]))}", secrets)
    )


@dataclass(frozen=True)
class Sync:
    """Where the current branch stands against its upstream after a fetch.

    Attributes:
        upstream: The remote-tracking ref (``origin/main``); None without an upstream.
        pulled: Commits fast-forwarded from the upstream.
        ahead: Local commits the upstream does not have (to push).
    """

    upstream: str | None = None
    pulled: int = 0
    ahead: int = 0

    def describe(self) -> str:
        """One line for the console and the daemon's log."""
        if self.upstream is None:
            return "no upstream branch to pull from"
        parts = []
        if self.pulled:
            parts.append(f"fast-forwarded {self.pulled} commit{'s' if self.pulled != 1 else ''}")
        if self.ahead:
            parts.append(f"{self.ahead} local commit{'s' if self.ahead != 1 else ''} to push")
        return f"{self.upstream}: " + ("; ".join(parts) if parts else "up to date")


def fetch(worktree: Path) -> str | None:
    """Fetch the current branch's upstream into its remote-tracking ref.

    Args:
        worktree: The work tree top.

    Returns:
        The remote-tracking ref (``refs/remotes/origin/main``), or None when HEAD is
        detached or its branch has no upstream (nothing to fetch).

    Raises:
        GitOpsError: The fetch failed (the message carries no credentials).
    """
    repo = _open(worktree)
    branch = _current_branch(repo)
    if branch is None:  # a detached checkout follows no branch
        return None
    remote, merge = _upstream(repo, branch)
    if remote is None or merge is None:
        return None
    tracking = f"refs/remotes/{remote}/{merge.removeprefix('refs/heads/')}"
    status, _, err = _run(
        repo, ["fetch", "--quiet", "--no-tags", remote, f"+{merge}:{tracking}"], env=_NO_PROMPT
    )
    if status != 0:
        secrets = _secrets(_remote_url(repo, remote) or remote)
        where = f"{remote} ({sanitize_url(_remote_url(repo, remote) or remote)})"
        raise GitOpsError(_redact(f"git fetch from {where} failed: {_detail(err)}", secrets))
    return tracking


def _counts(repo: git.Repo, tracking: str) -> tuple[int, int]:
    """(commits only on HEAD, commits only on ``tracking``)."""
    out = _check(
        repo, ["rev-list", "--left-right", "--count", f"HEAD...{tracking}"], "git rev-list"
    )
    ahead, behind = out.split()
    return int(ahead), int(behind)


def _short(tracking: str) -> str:
    return tracking.removeprefix("refs/remotes/")


def sync(worktree: Path) -> Sync:
    """Fetch the upstream and fast-forward the branch to it, as a git-ops agent does.

    Never merges and never forces: a branch that has commits of its own *and* is
    behind has diverged, which only a person can resolve.

    Args:
        worktree: The work tree top.

    Returns:
        What happened (see :class:`Sync`).

    Raises:
        GitOpsError: The branch diverged from its upstream, the fast-forward would
            overwrite local changes, or git failed.
    """
    repo = _open(worktree)
    top = _top(repo)
    tracking = fetch(top)
    if tracking is None:
        return Sync()
    ahead, behind = _counts(repo, tracking)
    if ahead and behind:
        raise GitOpsError(
            f"{top}: the branch has diverged from {_short(tracking)} ({ahead} local and "
            f"{behind} remote commit{'s' if behind != 1 else ''} apart); imagectl never merges "
            "or forces: reconcile it by hand (`git pull --rebase`), then re-run"
        )
    if behind:
        status, _, err = _run(repo, ["merge", "--ff-only", "--quiet", tracking])
        if status != 0:
            raise GitOpsError(
                f"cannot fast-forward {top} to {_short(tracking)}: {_detail(err)}; commit or "
                "stash the local changes git names, then re-run"
            )
    return Sync(upstream=_short(tracking), pulled=behind, ahead=ahead)


def unpushed(worktree: Path) -> bool:
    """Whether the branch has commits its upstream lacks (as last fetched).

    A branch without an upstream counts as unpushed once it has a commit: the next
    :func:`push` sets the upstream.
    """
    repo = _open(worktree)
    branch = _current_branch(repo)
    if branch is None or head_revision(_top(repo)) is None:
        return False
    remote, merge = _upstream(repo, branch)
    if remote is None or merge is None:
        return True
    tracking = f"refs/remotes/{remote}/{merge.removeprefix('refs/heads/')}"
    if _run(repo, ["rev-parse", "--verify", "-q", tracking])[0] != 0:
        return True
    return _counts(repo, tracking)[0] > 0


def is_tracked(worktree: Path, path: Path) -> bool:
    """Whether ``path`` is in git's index (committed or staged)."""
    repo = _open(worktree)
    rel = [str(p) for p in _relative(repo, [path])]
    return bool(_check(repo, ["ls-files", "-z", "--", *rel], "git ls-files").strip("\0"))


def is_ancestor(worktree: Path, ancestor: str, descendant: str) -> bool:
    """Whether ``ancestor`` is ``descendant`` or one of its ancestors (refs or shas)."""
    repo = _open(worktree)
    status, _, err = _run(repo, ["merge-base", "--is-ancestor", ancestor, descendant])
    if status not in (0, 1):
        raise GitOpsError(f"git merge-base in {_top(repo)} failed: {_detail(err)}")
    return status == 0


def rewind_to_upstream(worktree: Path, ours: Sequence[str]) -> str:
    """Drop this run's own unpushed commits and fast-forward to the fetched upstream.

    Used after a push was rejected because the remote moved: the run's commits touch
    only the lock, and it re-applies its change on top of the new remote state.
    ``git reset --keep`` refuses to lose any local change.

    Args:
        worktree: The work tree top.
        ours: Full shas of the commits this run made.

    Returns:
        The upstream commit now at HEAD.

    Raises:
        GitOpsError: No upstream, or the branch holds commits that are not this run's
            (it diverged: reported, never merged or forced), or git failed.
    """
    repo = _open(worktree)
    top = _top(repo)
    tracking = fetch(top)
    if tracking is None:
        raise GitOpsError(f"{top}: the branch has no upstream to re-read after a rejected push")
    mine = set(ours)
    local = _check(repo, ["rev-list", f"{tracking}..HEAD"], "git rev-list").split()
    foreign = [sha for sha in local if sha not in mine]
    if foreign:
        raise GitOpsError(
            f"{top}: the remote moved and the branch has {len(foreign)} commit(s) of its own "
            f"that {_short(tracking)} lacks; imagectl never merges or forces: reconcile it by "
            "hand (`git pull --rebase`), then re-run"
        )
    _check(repo, ["reset", "--quiet", "--keep", tracking], "git reset --keep")
    return _check(repo, ["rev-parse", "HEAD"], "git rev-parse").strip()


def _open(worktree: Path) -> git.Repo:
    try:
        return git.Repo(worktree)
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise GitOpsError(f"{worktree} is not a git work tree") from exc


def _top(repo: git.Repo) -> Path:
    if repo.working_tree_dir is None:
        raise GitOpsError(f"{repo.git_dir} is a bare repository; imagectl needs a work tree")
    return Path(repo.working_tree_dir).resolve()


def _run(
    repo: git.Repo, args: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """Run git in the work tree; paths are literal (no globbing of odd file names)."""
    full_env = {"GIT_LITERAL_PATHSPECS": "1", **(env or {})}
    try:
        return repo.git.execute(
            ["git", *args],
            with_extended_output=True,
            with_exceptions=False,
            env=full_env,
            strip_newline_in_stdout=False,
        )
    except (GitError, OSError) as exc:
        raise GitOpsError(f"cannot run git: {exc}") from exc


def _check(
    repo: git.Repo, args: Sequence[str], what: str, env: Mapping[str, str] | None = None
) -> str:
    status, out, err = _run(repo, args, env)
    if status != 0:
        raise GitOpsError(f"{what} in {repo.working_tree_dir} failed: {_detail(err)}")
    return out


def _detail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("hint:")]
    return _URL_IN_TEXT.sub(lambda m: sanitize_url(m.group(0)), "; ".join(kept)) or "no output"


def _secrets(url: str) -> list[str]:
    """The credential parts of ``url``, raw and percent-decoded, to scrub from messages."""
    match = _SCHEME_URL.match(url)
    if match is None:
        return []
    userinfo, at, _ = match["authority"].rpartition("@")
    parts = [*userinfo.split(":", 1)] if at else []
    query = match["rest"].partition("?")[2].partition("#")[0]
    parts += [kv.partition("=")[2] for kv in query.split("&")]
    found = {p for part in parts for p in (part, unquote(part)) if len(p) >= 4}
    return sorted(found, key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _relative(repo: git.Repo, paths: Sequence[Path]) -> list[Path]:
    top = _top(repo)
    rel: list[Path] = []
    for path in paths:
        absolute = path if path.is_absolute() else top / path
        # Resolve the parent only: the file itself may be gone (a deletion to commit).
        resolved = absolute.parent.resolve() / absolute.name
        try:
            rel.append(resolved.relative_to(top))
        except ValueError as exc:
            raise GitOpsError(f"{path} is outside the git work tree {top}") from exc
    return rel


def _config(repo: git.Repo, key: str) -> str | None:
    status, out, _ = _run(repo, ["config", "--get", key])
    return (out.strip() or None) if status == 0 else None


def _identity(repo: git.Repo, role: str) -> tuple[str, str] | None:
    """Git's own identity for ``role`` (AUTHOR or COMMITTER): environment, then config."""
    name = os.environ.get(f"GIT_{role}_NAME") or _config(repo, "user.name")
    email = os.environ.get(f"GIT_{role}_EMAIL") or _config(repo, "user.email")
    return (name, email) if name and email else None


def _identity_env(repo: git.Repo, author: tuple[str, str] | None) -> dict[str, str]:
    chosen = author or _identity(repo, "AUTHOR") or DEFAULT_AUTHOR
    committer = _identity(repo, "COMMITTER") or chosen
    return {
        "GIT_AUTHOR_NAME": chosen[0],
        "GIT_AUTHOR_EMAIL": chosen[1],
        "GIT_COMMITTER_NAME": committer[0],
        "GIT_COMMITTER_EMAIL": committer[1],
    }


def _current_branch(repo: git.Repo) -> str | None:
    status, out, _ = _run(repo, ["symbolic-ref", "--quiet", "--short", "HEAD"])
    return (out.strip() or None) if status == 0 else None


def _upstream(repo: git.Repo, branch: str) -> tuple[str | None, str | None]:
    """The branch's upstream remote and merge ref; a local upstream (``.``) counts as none."""
    remote = _config(repo, f"branch.{branch}.remote")
    merge = _config(repo, f"branch.{branch}.merge")
    if remote is None or remote == ".":
        return None, None
    return remote, merge


def _remote_url(repo: git.Repo, remote: str) -> str | None:
    """The configured URL of a named remote; a remote given as a URL is its own URL."""
    url = _config(repo, f"remote.{remote}.url")
    if url is None and ("/" in remote or ":" in remote):
        return remote
    return url
