"""`imagectl init`: the scaffold's files, and that it never overwrites anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagectl.errors import ImagectlError, UsageError
from imagectl.init import (
    WORKFLOW,
    ScaffoldFile,
    default_registry,
    plan_scaffold,
    write_scaffold,
)

ROOT = Path(__file__).resolve().parents[2]


def scaffold(workflow: bool = False) -> list[ScaffoldFile]:
    return plan_scaffold(
        registry="127.0.0.1:5055/team",
        base="example.test/debian:12",
        schema="{}\n",
        workflow=workflow,
    )


def test_scaffold_files_and_substitutions() -> None:
    files = {str(f.path): f for f in scaffold()}
    assert set(files) == {
        "imagectl.yaml",
        "schemas/imagectl.schema.json",
        ".gitignore",
        "images/base/.dockerignore",
        "images/base/Dockerfile",
        "images/base/motd",
        "images/hello/.dockerignore",
        "images/hello/Dockerfile",
        "images/hello/hello.sh",
    }
    manifest = files["imagectl.yaml"].text
    assert manifest.startswith("# yaml-language-server: $schema=schemas/imagectl.schema.json\n")
    assert "\nregistry: 127.0.0.1:5055/team\n" in manifest
    assert "ref: example.test/debian:12\n" in manifest
    assert files["images/hello/hello.sh"].executable
    assert "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" in files["images/base/Dockerfile"].text


def test_workflow_is_the_examples_reconcile_workflow() -> None:
    files = {f.path: f for f in scaffold(workflow=True)}
    assert files[WORKFLOW].text == (ROOT / "examples" / WORKFLOW).read_text()


def test_default_registry_is_the_local_environment_and_the_directory_name(tmp_path: Path) -> None:
    assert default_registry(tmp_path / "My Images") == "127.0.0.1:5055/my-images"
    assert default_registry(tmp_path / "x", "127.0.0.1:6000") == "127.0.0.1:6000/x"


@pytest.mark.parametrize("registry", ["", "a b/c"])
def test_a_bad_registry_is_a_usage_error(registry: str) -> None:
    with pytest.raises(UsageError, match="--registry"):
        plan_scaffold(registry=registry, base="debian:12", schema="{}", workflow=False)


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "images" / "hello").mkdir(parents=True)
    (tmp_path / "images" / "hello" / "Dockerfile").write_text("mine\n")
    with pytest.raises(ImagectlError, match=r"images/hello/Dockerfile: already exists"):
        write_scaffold(tmp_path, scaffold())
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "images",
        "images/hello",
        "images/hello/Dockerfile",
    ]
    assert (tmp_path / "images" / "hello" / "Dockerfile").read_text() == "mine\n"


def test_cli_refusal_exits_1_and_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "imagectl.yaml").write_text("version: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "imagectl", "init", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 1
    assert f"{tmp_path / 'imagectl.yaml'}: already exists" in result.stderr
    assert (tmp_path / "imagectl.yaml").read_text() == "version: 1\n"
    assert not (tmp_path / "images").exists()
