"""Lint rules: a positive and a negative case per rule, ignores, rendering and exit code."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from imagectl.lint import RULES, lint_command, lint_manifest
from imagectl.lint.dockerfile import parse_dockerfile
from imagectl.lint.dockerfile_rules import DockerfileTarget, Inherited, check_dockerfile
from imagectl.lint.findings import Finding
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest

REPO = Path(__file__).resolve().parents[2]
HEAD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
TAIL = 'USER 10001\nCMD ["app"]\n'
GOOD = HEAD + TAIL
DIGEST = "sha256:" + "a" * 64


def named(stage: str) -> str:
    return f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}} AS {stage}\n"


def good(body: str) -> str:
    return HEAD + textwrap.dedent(body) + TAIL


def rule_ids(text: str, **target: Any) -> list[str]:
    dockerfile = parse_dockerfile(textwrap.dedent(text))
    return sorted(
        f.rule for f in check_dockerfile(DockerfileTarget("Dockerfile", dockerfile, **target))
    )


NON_ROOT = {"inherited": Inherited("10001", False)}

# (rule, Dockerfile, target keywords, whether the rule fires)
CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("IC200", good("BOGUS thing\n"), {}, True),
    ("IC200", GOOD, {"target": "missing"}, True),
    ("IC200", GOOD, {}, False),
    ("IC201", HEAD + 'CMD ["app"]\n', {}, True),
    ("IC201", HEAD + 'CMD ["app"]\n', {"inherited": Inherited("root", False)}, True),
    ("IC201", HEAD + 'CMD ["app"]\n', NON_ROOT, False),
    ("IC202", HEAD + "USER app\nUSER root\n", NON_ROOT, True),
    ("IC202", HEAD + "USER 0:0\n", {}, True),
    ("IC202", HEAD + "USER root\nRUN make\nUSER app\n", {}, False),
    ("IC203", good("ADD app.py /srv/\n"), {}, True),
    ("IC203", good("ADD <<EOF /etc/motd\nhi\nEOF\n"), {}, True),
    ("IC203", good("COPY app.py /srv/\nADD rootfs.tar.gz /\n"), {}, False),
    ("IC204", good("ADD https://example.com/x.tgz /tmp/\n"), {}, True),
    ("IC204", good(f"ADD --checksum={DIGEST} https://example.com/x /x\n"), {}, False),
    ("IC205", good("RUN apt-get update && apt-get install -y curl\n"), {}, True),
    ("IC205", good("RUN apt-get -qq update\nRUN rm -rf /var/lib/apt/lists/*\n"), {}, True),
    ("IC205", good("RUN <<EOF\napt-get update\napt-get install -y curl\nEOF\n"), {}, True),
    (
        "IC205",
        good("RUN apt update \\\n && apt install -y x \\\n && rm -rf /var/lib/apt/lists/*\n"),
        {},
        False,
    ),
    ("IC205", good("RUN --mount=type=cache,target=/var/lib/apt apt-get update\n"), {}, False),
    ("IC205", good("RUN <<EOF\napt-get update\nrm -rf /var/lib/apt/lists/*\nEOF\n"), {}, False),
    ("IC206", good("RUN apt-get -y dist-upgrade\n"), {"base_image": "base"}, True),
    ("IC206", good("RUN apk upgrade --no-cache\n"), {"base_image": "base"}, True),
    ("IC206", good("RUN apt-get upgrade -y\n"), {}, False),
    ("IC206", good("RUN apt-get install -y unattended-upgrades\n"), {"base_image": "b"}, False),
    ("IC207", good("ENV GITHUB_TOKEN=abc\n"), {}, True),
    ("IC207", good("ENV DB_PASSWORD hunter2\n"), {}, True),
    ("IC207", good("ARG NPM_TOKEN\n"), {}, True),
    ("IC207", "ARG AWS_SECRET_ACCESS_KEY\n" + GOOD, {}, True),
    ("IC207", good("LABEL com.acme.apiKey=xyz\n"), {}, True),
    ("IC207", good("ENV CONFIG=AKIAABCDEFGHIJKLMNOP\n"), {}, True),
    ("IC207", good("ENV PASSWORD_FILE=/run/secrets/db GPG_KEY=0D96DF4D PATH=/x\n"), {}, False),
    ("IC207", good("ARG VERSION=1\nLABEL org.opencontainers.image.authors=me\n"), {}, False),
    ("IC208", HEAD + "USER 1\nCMD app --serve\n", {}, True),
    ("IC208", HEAD + "USER 1\nENTRYPOINT exec app\n", {}, True),
    ("IC208", HEAD + 'USER 1\nCMD app\nCMD ["app"]\nENTRYPOINT ["tini", "--"]\n', {}, False),
    ("IC209", good("EXPOSE 8080\n"), {}, True),
    ("IC209", good('EXPOSE 8080\nHEALTHCHECK CMD ["/ok"]\n'), {}, False),
    ("IC209", good("EXPOSE 8080\nHEALTHCHECK NONE\n"), {}, False),
    ("IC209", good("EXPOSE 8080\n"), {"inherited": Inherited("1", True)}, False),
    ("IC210", "FROM debian:12\n" + TAIL, {}, True),
    ("IC210", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS a\nFROM debian:12\n" + TAIL, {}, True),
    ("IC210", "ARG BASE_IMAGE\nFROM $BASE_IMAGE\n" + TAIL, {}, False),
    ("IC210", named("build") + "FROM scratch\nCOPY --from=build /a /a\n" + TAIL, {}, False),
    ("IC211", "FROM ${BASE_IMAGE}\n" + TAIL, {}, True),
    ("IC211", "FROM scratch\nARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" + TAIL, {}, True),
    ("IC211", GOOD, {}, False),
    ("IC212", "ARG BASE_IMAGE\nFROM golang:1.22 AS build\nFROM ${BASE_IMAGE}\n" + TAIL, {}, True),
    ("IC212", f"ARG BASE_IMAGE\nFROM golang@{DIGEST} AS b\nFROM $BASE_IMAGE\n" + TAIL, {}, False),
    ("IC213", "# syntax=docker/dockerfile:1\n" + GOOD, {}, True),
    ("IC213", "# escape=`\n# syntax=127.0.0.1:5000/fe:latest\n" + GOOD, {}, True),
    ("IC213", f"# syntax=docker/dockerfile:1@{DIGEST}\n" + GOOD, {}, False),
    ("IC213", "# a comment first\n# syntax=docker/dockerfile:1\n" + GOOD, {}, False),
]


@pytest.mark.parametrize(("rule", "text", "target", "fires"), CASES)
def test_dockerfile_rule(rule: str, text: str, target: dict[str, Any], fires: bool) -> None:
    assert (rule in rule_ids(text, **target)) is fires


def test_every_dockerfile_rule_has_a_positive_and_a_negative_case() -> None:
    covered = {(rule, fires) for rule, _, _, fires in CASES}
    for rule in (r for r in RULES if r.startswith("IC2")):
        assert {(rule, True), (rule, False)} <= covered, rule


def test_the_target_stage_is_the_final_stage() -> None:
    text = named("runtime") + TAIL + "FROM runtime AS debug\nUSER root\n"
    assert "IC202" in rule_ids(text)
    assert rule_ids(text, target="runtime") == []


def test_a_clean_dockerfile_has_no_findings() -> None:
    assert rule_ids(good('COPY app /srv/app\nEXPOSE 80\nHEALTHCHECK CMD ["/ok"]\n')) == []


def repo(tmp: Path, manifest: str, dockerfiles: dict[str, str]) -> Manifest:
    for context, text in dockerfiles.items():
        (tmp / context).mkdir(parents=True, exist_ok=True)
        (tmp / context / "Dockerfile").write_text(textwrap.dedent(text))
    (tmp / "imagectl.yaml").write_text(textwrap.dedent(manifest))
    return load_manifest(tmp / "imagectl.yaml")


def found(manifest: Manifest) -> list[tuple[str, str, int]]:
    return [(f.rule, f.file, f.line) for f in lint_manifest(manifest)]


MANIFEST = """\
version: 1
registry: localhost:5000/acme
bases:
  debian: {{ref: "{debian}"}}
families:
  os:
    from: debian
    images:
      base: {{context: base, version: "1.0"}}
      app: {{context: app, version: "1.0", from: "{app_from}"{extra}}}
"""


FAMILY = """\
version: 1
registry: r.example/acme
bases: {debian: {ref: "debian:12"}}
families:
  f:
    from: debian
    images:
"""


def manifest_ids(tmp: Path, debian: str = "debian:12", app_from: str = "base", **kw: str) -> Any:
    text = MANIFEST.format(debian=debian, app_from=app_from, extra=kw.get("extra", ""))
    app = kw.get("app", GOOD)
    return [r for r, _, _ in found(repo(tmp, text, {"base": GOOD, "app": app}))]


@pytest.mark.parametrize(
    ("kwargs", "rule", "fires"),
    [
        ({"debian": "docker.io/library/debian"}, "IC101", True),
        ({"debian": "debian:latest"}, "IC101", True),
        ({}, "IC101", False),
        ({"app_from": "docker.io/library/debian:12"}, "IC102", True),
        ({}, "IC102", False),
        ({"debian": f"debian:12@{DIGEST}"}, "IC103", "info"),
        ({}, "IC103", False),
        ({"app_from": "alpine:3.20"}, "IC104", True),
        ({}, "IC104", False),
        ({"extra": ", lint: {ignore: [IC999]}"}, "IC100", True),
        ({"extra": ", lint: {ignore: [DL3008, ic203]}"}, "IC100", False),
        ({"extra": ', args: {DB_PASSWORD: "hunter2"}'}, "IC207", True),
        ({"extra": ', args: {CONFIG: "AKIAABCDEFGHIJKLMNOP"}'}, "IC207", True),
        ({"extra": ', args: {DB_PASSWORD_FILE: "/run/secrets/db"}'}, "IC207", False),
    ],
)
def test_manifest_rule(tmp_path: Path, kwargs: dict[str, str], rule: str, fires: Any) -> None:
    assert (rule in manifest_ids(tmp_path, **kwargs)) is bool(fires)


def test_manifest_findings_point_at_the_line_to_change(tmp_path: Path) -> None:
    text = MANIFEST.format(debian="debian", app_from="alpine:3.20", extra="")
    manifest = repo(tmp_path, text, {"base": GOOD, "app": GOOD})
    assert found(manifest) == [
        ("IC101", "imagectl.yaml", 4),  # the bases: entry
        ("IC102", "imagectl.yaml", 10),  # the literal from:
        ("IC104", "imagectl.yaml", 10),
    ]


def test_a_secret_build_arg_is_located_where_it_is_written_and_never_quoted(
    tmp_path: Path,
) -> None:
    text = """\
    version: 1
    registry: r.example/acme
    bases: {debian: {ref: "debian:12"}}
    defaults:
      args: {NPM_TOKEN: "canary-defaults-77"}
    families:
      f:
        from: debian
        args:
          API_KEY: "canary-family-88"
        images:
          a: {context: a, version: "1.0"}
    """
    manifest = repo(tmp_path, text, {"a": GOOD})
    findings = lint_manifest(manifest)
    assert [(f.rule, f.file, f.line) for f in findings] == [
        ("IC207", "imagectl.yaml", 5),
        ("IC207", "imagectl.yaml", 10),
    ]
    assert not any("canary" in f.message for f in findings)


def test_an_unpinned_frontend_is_an_error_at_its_directive_line() -> None:
    findings = check_dockerfile(
        DockerfileTarget("Dockerfile", parse_dockerfile("# escape=`\n# syntax=fe:1\n" + GOOD))
    )
    assert [(f.rule, f.line, f.severity) for f in findings] == [("IC213", 2, "error")]


@pytest.mark.parametrize(
    ("ignore", "fires"),
    [(None, True), ("*.md\n", True), (".git\n", False), ("**/.git\n", False)],
)
def test_a_context_holding_the_git_directory_warns(
    tmp_path: Path, ignore: str | None, fires: bool
) -> None:
    text = FAMILY + (
        '      root: {context: ., dockerfile: app/Dockerfile, version: "1.0"}\n'
        '      app: {context: app, version: "1.0"}\n'
    )
    manifest = repo(tmp_path, text, {"app": GOOD})
    (tmp_path / ".git").mkdir()
    if ignore is not None:
        (tmp_path / ".dockerignore").write_text(ignore)
    expected = [("IC105", "imagectl.yaml", 8)] if fires else []
    assert found(manifest) == expected


def test_family_without_a_base_warns_about_the_odd_one_out(tmp_path: Path) -> None:
    text = """\
    version: 1
    registry: r.example/acme
    bases: {debian: {ref: "debian:12"}, alpine: {ref: "alpine:3.20"}}
    families:
      apps:
        images:
          a: {context: a, version: "1.0", from: debian}
          b: {context: b, version: "1.0", from: debian}
          c: {context: c, version: "1.0", from: alpine}
    """
    manifest = repo(tmp_path, text, {"a": GOOD, "b": GOOD, "c": GOOD})
    assert found(manifest) == [("IC104", "imagectl.yaml", 9)]


def test_derived_image_inherits_user_and_healthcheck_from_its_manifest_base(tmp_path: Path) -> None:
    app = HEAD + 'EXPOSE 80\nCMD ["app"]\n'  # no USER, no HEALTHCHECK of its own
    assert manifest_ids(tmp_path / "a", app=app) == ["IC209"]  # base: USER 10001, no check
    assert manifest_ids(tmp_path / "b", app=app, app_from="debian") == ["IC201", "IC209"]
    text = MANIFEST.format(debian="debian:12", app_from="base", extra="")
    base = good('HEALTHCHECK CMD ["/ok"]\n')
    assert found(repo(tmp_path / "c", text, {"base": base, "app": app})) == []


def test_per_image_ignore_silences_only_that_image(tmp_path: Path) -> None:
    text = FAMILY + (
        '      one: {context: shared, version: "1.0", lint: {ignore: [IC203]}}\n'
        '      two: {context: shared, version: "1.0"}\n'
    )
    manifest = repo(tmp_path, text, {"shared": good("ADD app /app\n")})
    assert found(manifest) == [("IC203", "shared/Dockerfile", 3)]
    ignore_both = text.replace('version: "1.0"}\n', 'version: "1.0", lint: {ignore: [ic203]}}\n')
    assert found(repo(tmp_path, ignore_both, {})) == []


def test_per_line_ignore_applies_to_the_instruction_below_only(tmp_path: Path) -> None:
    body = """\
    # imagectl: ignore=IC203
    ADD a /a
    # imagectl: ignore=IC204, IC205
    ADD https://example.com/x /x
    # imagectl: ignore=IC203

    ADD b /b
    RUN apt-get update
    """
    manifest = repo(
        tmp_path,
        MANIFEST.format(debian="debian:12", app_from="base", extra=""),
        {"base": GOOD, "app": good(body)},
    )
    assert found(manifest) == [("IC203", "app/Dockerfile", 9), ("IC205", "app/Dockerfile", 10)]


def test_exit_code_and_formats(tmp_path: Path) -> None:
    app = good("ENV API_TOKEN=x\nADD a /a\nEXPOSE 80\n")
    manifest = repo(
        tmp_path,
        MANIFEST.format(debian="debian:12", app_from="base", extra=""),
        {"base": GOOD, "app": app},
    )
    out = io.StringIO()
    assert lint_command(manifest, hadolint=False, format="text", out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "app/Dockerfile:3: error IC207: ENV API_TOKEN: a secret in ENV stays in the image and "
        "its history (fix: use a BuildKit secret (secrets: in the manifest, "
        "RUN --mount=type=secret))"
    )
    assert lines[-1] == "lint: 1 error, 2 warnings in 1 file"
    out = io.StringIO()
    assert lint_command(manifest, hadolint=False, format="json", out=out) == 1
    document = json.loads(out.getvalue())
    assert document["format"] == 1 and document["counts"] == {"error": 1, "warning": 2, "info": 0}
    assert [f["id"] for f in document["findings"]] == ["IC207", "IC203", "IC209"]
    out = io.StringIO()
    lint_command(manifest, hadolint=False, format="github", out=out)
    assert out.getvalue().startswith("::error file=app/Dockerfile,line=3::IC207: ENV API_TOKEN")
    assert "::warning file=app/Dockerfile,line=5::IC209" in out.getvalue()
    clean = repo(
        tmp_path / "w",
        MANIFEST.format(debian="debian", app_from="base", extra=""),
        {"base": GOOD, "app": GOOD},
    )
    assert lint_command(clean, hadolint=False, format="text", out=io.StringIO()) == 0


def test_findings_sort_by_file_then_line() -> None:
    findings = [Finding("b", 1, "IC2", "info", "m", "f"), Finding("a", 9, "IC2", "info", "m", "f")]
    assert [f.file for f in sorted(findings)] == ["a", "b"]


def test_examples_have_no_error_findings() -> None:
    manifest = load_manifest(REPO / "examples" / "imagectl.yaml")
    errors = [f for f in lint_manifest(manifest) if f.severity == "error"]
    assert errors == []


def test_docs_table_lists_every_rule_with_its_severity() -> None:
    text = (REPO / "docs" / "lint.md").read_text()
    rows = dict(re.findall(r"^\| `?(IC\d{3})`? \| (\w+) \|", text, re.MULTILINE))
    assert rows == {rule.id: rule.severity for rule in RULES.values()}
