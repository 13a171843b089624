"""Inputs digests: what changes them, what never does, and that contexts are hashed once."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagectl.errors import ImagectlError, ManifestError
from imagectl.inputs import ContextHasher, inputs_digest
from imagectl.manifest.loader import load_manifest


def make_tree(root: Path) -> Path:
    """A repository root with one context `images/app`."""
    ctx = root / "images" / "app"
    (ctx / "src" / "pkg").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /app\n")
    (ctx / "src" / "main.py").write_text("print('hi')\n")
    (ctx / "src" / "pkg" / "util.py").write_text("X = 1\n")
    (ctx / "run.sh").write_text("#!/bin/sh\nexec python src/main.py\n")
    (ctx / "run.sh").chmod(0o755)
    (ctx / "README.md").write_text("# app\n")
    (ctx / "notes.log").write_text("ignored\n")
    (ctx / "cache").mkdir()
    (ctx / "cache" / "big.bin").write_bytes(b"\0" * 100)
    (ctx / ".dockerignore").write_text("*.log\ncache\n")
    os.symlink("src/main.py", ctx / "entry.py")
    return ctx


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    make_tree(root)
    return root


def digest(root: Path, context: str = "images/app", dockerfile: str = "Dockerfile") -> str:
    return ContextHasher(root).context_digest(Path(context), Path(dockerfile))


Mutation = Callable[[Path], object]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _relink(path: Path, target: str) -> None:
    path.unlink()
    os.symlink(target, path)


CHANGES: dict[str, Mutation] = {
    "content": lambda ctx: (ctx / "src" / "main.py").write_text("print('bye')\n"),
    "dockerfile": lambda ctx: (ctx / "Dockerfile").write_text("FROM scratch\n"),
    "exec bit set": lambda ctx: (ctx / "src" / "main.py").chmod(0o755),
    "exec bit cleared": lambda ctx: (ctx / "run.sh").chmod(0o644),
    "rename": lambda ctx: (ctx / "README.md").rename(ctx / "README.txt"),
    "move to subdir": lambda ctx: (ctx / "README.md").rename(ctx / "src" / "README.md"),
    "new file": lambda ctx: (ctx / "src" / "new.py").write_text(""),
    "new empty file in new dir": lambda ctx: _write(ctx / "etc" / "conf", ""),
    "deleted file": lambda ctx: (ctx / "src" / "pkg" / "util.py").unlink(),
    "symlink target": lambda ctx: _relink(ctx / "entry.py", "src/pkg/util.py"),
    "file becomes symlink": lambda ctx: _relink(ctx / "README.md", "src/main.py"),
    "ignore file re-includes": lambda ctx: (ctx / ".dockerignore").write_text("cache\n"),
    "per-Dockerfile ignore file": lambda ctx: (ctx / "Dockerfile.dockerignore").write_text(
        "README.md\n"
    ),
}

NO_CHANGES: dict[str, Mutation] = {
    "ignored file edited": lambda ctx: (ctx / "notes.log").write_text("other\n"),
    "ignored file added": lambda ctx: (ctx / "debug.log").write_text(""),
    "file in ignored dir": lambda ctx: (ctx / "cache" / "more.bin").write_bytes(b"x"),
    "mtime": lambda ctx: os.utime(ctx / "src" / "main.py", (1, 1)),
    "group/other bits": lambda ctx: (ctx / "src" / "main.py").chmod(0o600),
    "empty dir": lambda ctx: (ctx / "src" / "empty").mkdir(),
    "git metadata": lambda ctx: _write(ctx / ".git" / "HEAD", "ref: refs/heads/main\n"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_digest_changes(repo: Path, name: str) -> None:
    before = digest(repo)
    CHANGES[name](repo / "images" / "app")
    assert digest(repo) != before


@pytest.mark.parametrize("name", sorted(NO_CHANGES))
def test_digest_does_not_change(repo: Path, name: str) -> None:
    before = digest(repo)
    NO_CHANGES[name](repo / "images" / "app")
    assert digest(repo) == before


def test_digest_format_and_absolute_paths(repo: Path) -> None:
    value = digest(repo)
    assert value.startswith("sha256:")
    assert len(value) == len("sha256:") + 64
    absolute = ContextHasher().context_digest(repo / "images/app", repo / "images/app/Dockerfile")
    assert absolute == value


def test_stable_across_copies_and_mtimes(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(repo, copy, symlinks=True)
    for dirpath, _, files in os.walk(copy):
        for name in files:
            os.utime(os.path.join(dirpath, name), (1_000_000, 1_000_000), follow_symlinks=False)
    assert digest(copy) == digest(repo)


def test_symlink_out_of_context_is_not_followed(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("one\n")
    ctx = repo / "images" / "app"
    os.symlink(outside, ctx / "link")
    os.symlink(tmp_path, ctx / "dirlink")
    before = digest(repo)
    outside.write_text("two\n")
    (tmp_path / "new-outside-file").write_text("x")
    assert digest(repo) == before


def test_dockerfile_outside_context_counts(repo: Path) -> None:
    dockerfiles = repo / "dockerfiles"
    dockerfiles.mkdir()
    (dockerfiles / "app.Dockerfile").write_text("FROM scratch\n")
    outside = "../../dockerfiles/app.Dockerfile"
    before = digest(repo, dockerfile=outside)
    assert before != digest(repo)
    (dockerfiles / "app.Dockerfile").write_text("FROM scratch\nUSER 1000\n")
    assert digest(repo, dockerfile=outside) != before


def test_ignored_dockerfile_still_counts(repo: Path) -> None:
    ctx = repo / "images" / "app"
    (ctx / ".dockerignore").write_text("Dockerfile\n*.log\ncache\n")
    before = digest(repo)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    assert digest(repo) != before


def test_exception_inside_excluded_dir_is_hashed(repo: Path) -> None:
    ctx = repo / "images" / "app"
    (ctx / ".dockerignore").write_text("cache\n!cache/keep.txt\n")
    (ctx / "cache" / "keep.txt").write_text("one")
    before = digest(repo)
    (ctx / "cache" / "big.bin").write_bytes(b"changed")
    assert digest(repo) == before
    (ctx / "cache" / "keep.txt").write_text("two")
    assert digest(repo) != before


@pytest.mark.parametrize("where", [".", "images"])  # the root, or a nested manifest's
def test_imagectl_state_is_never_an_input(repo: Path, where: str) -> None:
    (repo / "Dockerfile").write_text("FROM scratch\n")
    before = digest(repo, context=".")
    top = repo / where
    (top / "imagectl.lock").write_text("format: 1\n")
    (top / ".imagectl.lock.x1y2.tmp").write_text("format: 1\n")
    (top / ".imagectl" / "logs").mkdir(parents=True)
    (top / ".imagectl" / "logs" / "app.log").write_text("building\n")
    (top / ".imagectl" / "apply.lck").write_text("")
    (top / ".imagectl" / "cache").mkdir()
    (top / ".imagectl" / "cache" / "manifest.json").write_text("{}")
    (top / ".git").mkdir()
    (top / ".git" / "index").write_bytes(b"\1\2")
    assert digest(repo, context=".") == before
    assert not any(
        f.rel.endswith(("imagectl.lock", ".tmp")) or ".imagectl/" in f.rel or ".git/" in f.rel
        for f in ContextHasher(repo).context_files(Path("."), Path("Dockerfile"))
    )
    (top / "imagectl.lock.md").write_text("a file of the user's\n")
    assert digest(repo, context=".") != before


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    real = os.scandir

    def spy(path: Any) -> Any:
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    yield seen


def test_excluded_directory_is_not_walked(repo: Path, scanned: list[str]) -> None:
    digest(repo)
    assert any(path.endswith("src") for path in scanned)
    assert not any(path.endswith("cache") for path in scanned)


def test_shared_context_is_walked_once(repo: Path, scanned: list[str]) -> None:
    hasher = ContextHasher(repo)
    ctx = Path("images/app")
    digests = {hasher.context_digest(ctx, Path("Dockerfile")) for _ in range(50)}
    assert len(digests) == 1
    assert hasher.walks == 1
    walked = len(scanned)

    # another Dockerfile in the same context with the same ignore rules: no new walk
    (repo / ctx / "Dockerfile.dev").write_text("FROM scratch\n")
    dev = hasher.context_digest(ctx, Path("Dockerfile.dev"))
    assert dev not in digests
    assert hasher.walks == 1
    assert len(scanned) == walked

    # its own ignore file gives other rules: the next run walks again, to another digest
    # (one hasher serves one run: its answers are memoised per context and Dockerfile)
    (repo / ctx / "Dockerfile.dev.dockerignore").write_text("src\n")
    fresh = ContextHasher(repo)
    assert fresh.context_digest(ctx, Path("Dockerfile.dev")) != dev
    assert fresh.walks == 1


def test_missing_context_or_dockerfile_is_an_error(repo: Path) -> None:
    with pytest.raises(ImagectlError, match="build context images/none is not a directory"):
        digest(repo, context="images/none")
    with pytest.raises(ImagectlError, match="cannot read Dockerfile images/app/Nope"):
        digest(repo, dockerfile="Nope")


def test_malformed_ignore_file_is_located(repo: Path) -> None:
    (repo / "images" / "app" / ".dockerignore").write_text("*.log\n[oops\n")
    with pytest.raises(ManifestError, match=r"images/app/\.dockerignore:2: invalid ignore pattern"):
        digest(repo)


PARAMS: dict[str, object] = {
    "args": {"PYTHON_VERSION": "3.12.7", "EXTRA": "1"},
    "target": "runtime",
    "platforms": ["linux/amd64"],
    "labels": {"com.acme.team": "platform"},
    "secrets": ["pip"],
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("args", {"PYTHON_VERSION": "3.12.8", "EXTRA": "1"}),
        ("args", {"PYTHON_VERSION": "3.12.7"}),
        ("target", "debug"),
        ("target", None),
        ("platforms", ["linux/amd64", "linux/arm64"]),
        ("labels", {"com.acme.team": "web"}),
        ("secrets", ["pip", "npm"]),
    ],
)
def test_build_parameters_change_the_inputs(key: str, value: object) -> None:
    base = inputs_digest("sha256:ctx", PARAMS)
    assert inputs_digest("sha256:ctx", {**PARAMS, key: value}) != base


def test_inputs_digest_is_canonical() -> None:
    reordered = {
        "secrets": ["pip"],
        "labels": {"com.acme.team": "platform"},
        "platforms": ["linux/amd64"],
        "target": "runtime",
        "args": {"EXTRA": "1", "PYTHON_VERSION": "3.12.7"},
    }
    value = inputs_digest("sha256:ctx", PARAMS)
    assert value == inputs_digest("sha256:ctx", reordered)
    assert value.startswith("sha256:")
    assert len(value) == len("sha256:") + 64
    assert inputs_digest("sha256:other", PARAMS) != value


# --------------------------------------------------------------- what each builder sends

IGNORE_FILES = {  # file -> what it excludes
    "Dockerfile.dockerignore": "a.txt",
    "Dockerfile.containerignore": "b.txt",
    ".containerignore": "c.txt",
    ".dockerignore": "d.txt",
}


@pytest.mark.parametrize(
    ("builder", "present", "excluded"),
    [
        # buildah 1.28: <Dockerfile>.dockerignore, <Dockerfile>.containerignore,
        # .containerignore, .dockerignore; the first found wins
        ("buildah", list(IGNORE_FILES), "a.txt"),
        ("buildah", list(IGNORE_FILES)[1:], "b.txt"),
        ("buildah", list(IGNORE_FILES)[2:], "c.txt"),
        ("buildah", list(IGNORE_FILES)[3:], "d.txt"),
        # docker (BuildKit) reads no .containerignore
        ("docker", list(IGNORE_FILES)[1:], "d.txt"),
        ("docker", list(IGNORE_FILES), "a.txt"),
    ],
)
def test_each_builder_reads_its_own_ignore_file(
    tmp_path: Path, builder: str, present: list[str], excluded: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (tmp_path / name).write_text(name)
    for name in present:
        (tmp_path / name).write_text(IGNORE_FILES[name] + "\n")
    files = ContextHasher(tmp_path).context_files(Path("."), Path("Dockerfile"), builder)
    sent = {f.rel for f in files if f.rel.endswith(".txt")}
    assert sent == {"a.txt", "b.txt", "c.txt", "d.txt"} - {excluded}


def test_a_file_only_buildah_sends_is_an_input_of_buildah_images_only(repo: Path) -> None:
    ctx = repo / "images" / "app"
    (ctx / ".containerignore").write_text("README.md\n")
    hasher = ContextHasher(repo)
    before = {b: hasher.context_digest(Path("images/app"), Path("Dockerfile"), b) for b in BUILDERS}
    (ctx / "notes.log").write_text("buildah sends it: .containerignore wins\n")
    after = ContextHasher(repo)
    assert (
        after.context_digest(Path("images/app"), Path("Dockerfile"), "buildah") != before["buildah"]
    )
    assert (
        after.context_digest(Path("images/app"), Path("Dockerfile"), "docker") == before["docker"]
    )


BUILDERS = ("docker", "buildah")


@pytest.mark.parametrize(
    ("builder", "files", "chosen"),
    [
        ("buildah", ["Containerfile", "Dockerfile"], "Containerfile"),
        ("buildah", ["Dockerfile"], "Dockerfile"),
        ("docker", ["Containerfile", "Dockerfile"], "Dockerfile"),
        ("docker", ["Containerfile"], "Containerfile"),
    ],
)
def test_the_default_dockerfile_is_the_builders(
    tmp_path: Path, builder: str, files: list[str], chosen: str
) -> None:
    (tmp_path / "app").mkdir()
    for name in files:
        (tmp_path / "app" / name).write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "imagectl.yaml").write_text(
        "version: 1\nregistry: r.example/acme\n"
        f"defaults: {{builder: {builder}}}\n"
        "families:\n  f:\n    from: debian:12\n    images:\n"
        '      app: {context: app, version: "1.0"}\n'
    )
    manifest = load_manifest(tmp_path / "imagectl.yaml")
    assert manifest.images["app"].dockerfile == tmp_path / "app" / chosen
    for other in {"Containerfile", "Dockerfile"} - set(files):
        (tmp_path / "app" / other).write_text("FROM scratch\n")  # the manifest cache notices
    both = load_manifest(tmp_path / "imagectl.yaml").images["app"].dockerfile.name
    assert both == ("Containerfile" if builder == "buildah" else "Dockerfile")
