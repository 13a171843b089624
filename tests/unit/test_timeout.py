"""The `timeout` setting: its syntax, its inheritance and its located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imagectl.durations import format_duration, parse_duration
from imagectl.errors import ManifestError
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("45m", 2700), ("1h", 3600), ("1h30m", 5400), ("2h0m5s", 7205), ("0s", 0)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "45", "45 m", "1.5h", "30m1h", "1h1h", "-5m", "10d", "5M"])
def test_parse_duration_refuses(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (2700, "45m"), (5400, "1h30m"), (3661, "1h1m1s"), (0.2, "1s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


MANIFEST = """\
version: 1
registry: localhost:5000/acme
defaults:
  builder: docker
  timeout: {defaults}
families:
  runtime:
    from: docker.io/library/debian:12
    timeout: {family}
    images:
      base:
        context: ctx
        version: "1.0"
        timeout: {image}
      other:
        context: ctx
        version: "1.0"
  tools:
    from: docker.io/library/debian:12
    images:
      plain:
        context: ctx
        version: "1.0"
"""


def manifest(tmp_path: Path, defaults: str, family: str, image: str) -> Path:
    (tmp_path / "ctx").mkdir(exist_ok=True)
    (tmp_path / "ctx" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    text = MANIFEST.format(defaults=defaults, family=family, image=image)
    text = "\n".join(line for line in text.splitlines() if line.strip() != "timeout:")
    path = tmp_path / "imagectl.yaml"
    path.write_text(textwrap.dedent(text) + "\n")
    return path


def test_timeout_is_inherited_defaults_family_image(tmp_path: Path) -> None:
    images = load_manifest(manifest(tmp_path, "2h", "45m", "90s")).images
    assert images["base"].timeout == 90
    assert images["other"].timeout == 45 * 60
    assert images["plain"].timeout == 2 * 3600


def test_timeout_defaults_to_one_hour(tmp_path: Path) -> None:
    images = load_manifest(manifest(tmp_path, "", "", "")).images
    assert DEFAULT_TIMEOUT == 3600
    assert {image.timeout for image in images.values()} == {3600}


@pytest.mark.parametrize(
    ("value", "message"),
    [("45 minutes", "'45 minutes' is not a duration"), ("0m", "'0m' must be at least 1s")],
)
def test_bad_timeout_is_located(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest(tmp_path, "1h", "1h", value))
    [problem] = info.value.problems
    assert problem.message == message
    assert (problem.location.line, problem.location.col) == (14, 18)
    assert problem.key_path == "families.runtime.images.base.timeout"
    assert "1h30m" in problem.hint


def test_timeout_must_be_text(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest(tmp_path, "1h", "1h", "90"))
    [problem] = info.value.problems
    assert problem.key_path == "families.runtime.images.base.timeout"
    assert problem.location.line == 14
