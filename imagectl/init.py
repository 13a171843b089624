"""`imagectl init [DIR]`: scaffold a git-ops repository that validates, lints and applies.

The files come from the package's `templates/init/` directory. `plan_scaffold`
is pure (what would be written where); `write_scaffold` refuses to overwrite any
file before it writes a single one, so a refused init leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

from imagectl.errors import ImagectlError, UsageError

TEMPLATES = Path(__file__).parent / "templates" / "init"
DEFAULT_REGISTRY_HOST = "127.0.0.1:5055"  # the kept local environment (scripts/dev.sh)
DEFAULT_BASE = "docker.io/library/debian:bookworm-slim"
WORKFLOW = Path(".github/workflows/reconcile.yml")


@dataclass(frozen=True)
class ScaffoldFile:
    """One file of the scaffold: its path in the new repository and its content."""

    path: Path
    text: str
    executable: bool = False


def default_registry(target: Path, host: str | None = None) -> str:
    """`<host>/<directory name>`, the name reduced to a valid repository path.

    `host` defaults to the kept local environment's registry (`IMAGECTL_DEV_REGISTRY`,
    exported by `scripts/dev.sh env`), else 127.0.0.1:5055.
    """
    name = re.sub(r"[^a-z0-9]+", "-", target.resolve().name.lower()).strip("-") or "images"
    return f"{host or DEFAULT_REGISTRY_HOST}/{name}"


def plan_scaffold(*, registry: str, base: str, schema: str, workflow: bool) -> list[ScaffoldFile]:
    """The files of a new git-ops repository (paths relative to its top)."""
    if not registry.strip() or any(c.isspace() for c in registry):
        raise UsageError(f"--registry {registry!r}: expected HOST[:PORT]/PATH, e.g. ghcr.io/acme")
    if not base.strip() or any(c.isspace() for c in base):
        raise UsageError(f"--base {base!r}: expected an image reference, e.g. {DEFAULT_BASE}")
    manifest = string.Template((TEMPLATES / "imagectl.yaml.tmpl").read_text())
    files = [
        ScaffoldFile(Path("imagectl.yaml"), manifest.substitute(registry=registry, base=base)),
        ScaffoldFile(Path("schemas/imagectl.schema.json"), schema),
        ScaffoldFile(Path(".gitignore"), (TEMPLATES / "gitignore").read_text()),
    ]
    for image in ("base", "hello"):
        source = TEMPLATES / "images" / image
        files.append(
            ScaffoldFile(
                Path("images", image, ".dockerignore"), (TEMPLATES / "dockerignore").read_text()
            )
        )
        for item in sorted(source.iterdir()):
            files.append(
                ScaffoldFile(
                    Path("images", image, item.name),
                    item.read_text(),
                    executable=item.suffix == ".sh",
                )
            )
    if workflow:
        files.append(ScaffoldFile(WORKFLOW, (TEMPLATES / "reconcile.yml").read_text()))
    return files


def write_scaffold(target: Path, files: list[ScaffoldFile]) -> None:
    """Write `files` under `target`; refuse (exit 1, naming the file) if any one exists."""
    if target.exists() and not target.is_dir():
        raise ImagectlError(f"{target}: exists and is not a directory")
    for item in files:
        path = target / item.path
        if path.exists() or path.is_symlink():
            raise ImagectlError(
                f"{path}: already exists; imagectl init never overwrites a file "
                "(move it away, or init another directory)"
            )
    created: list[Path] = []
    try:
        for item in files:
            path = target / item.path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite, even racing
                created.append(path)
                handle.write(item.text)
            if item.executable:
                path.chmod(0o755)
    except OSError as exc:
        for path in created:
            path.unlink(missing_ok=True)
        raise ImagectlError(f"{exc.filename}: cannot write: {exc.strerror}") from None


def git_init(target: Path) -> bool:
    """`git init -b main` unless `target` already lies in a git work tree; True if it ran."""
    from imagectl.proc import run

    git = shutil.which("git")
    if git is None:
        return False
    inside = run([git, "rev-parse", "--is-inside-work-tree"], cwd=target)
    if inside.ok:
        return False
    result = run([git, "init", "-q", "-b", "main"], cwd=target)
    if not result.ok:
        raise ImagectlError(f"{target}: git init failed: {result.output.strip()[-500:]}")
    return True
