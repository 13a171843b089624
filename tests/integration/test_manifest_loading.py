"""Manifest loading through the real CLI, real git and the real registry.

A manifest written in flow style with ports and colons in plain scalars, CRLF
line ends, a byte order mark and an uppercase `LOCALHOST` host is found from a
subdirectory of its git repository, and plans against the registry exactly as
its block-style twin does; without a manifest, the CLI exits 2 saying where it looked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from devenv.registry import RegistryServer
from tests.fixtures.oci import push_image

pytestmark = pytest.mark.integration

FLOW = (
    "version: 1\n"
    "registry: LOCALHOST:{port}/{repo}\n"
    "bases: {{debian: {{ref: LOCALHOST:{port}/{repo}/upstream:12}}}}\n"
    "families: {{runtime: {{from: debian, images: {{base: {{context: base, version: '1.4'}}}}}}}}\n"
)


def imagectl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGECTL_FILE"}
    env.update(IMAGECTL_NO_CACHE="1", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "imagectl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def git_repo(root: Path) -> Path:
    (root / "base").mkdir(parents=True)
    (root / "base" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (root / "docs" / "notes").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def plan_from_subdirectory(root: Path) -> dict[str, object]:
    result = imagectl(root / "docs" / "notes", "plan", "--json")
    assert result.returncode == 0, result.stderr
    plan: dict[str, object] = json.loads(result.stdout)
    return plan


def test_flow_style_crlf_bom_uppercase_host_plans_like_block_style(
    tmp_path: Path, registry: RegistryServer, repo: str
) -> None:
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        pushed = push_image(http, f"{repo}/upstream", "12")
    port = registry.host.rsplit(":", 1)[1]
    flow = git_repo(tmp_path / "flow")
    text = FLOW.format(port=port, repo=repo).replace("\n", "\r\n")
    (flow / "imagectl.yaml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    block = git_repo(tmp_path / "block")  # the same in block style, lowercase host, LF
    data = YAML(typ="safe", pure=True).load(FLOW.format(port=port, repo=repo))
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    with (block / "imagectl.yaml").open("w") as handle:
        writer.dump(json.loads(json.dumps(data).replace("LOCALHOST", "localhost")), handle)
    assert "{" not in (block / "imagectl.yaml").read_text()

    flow_plan, block_plan = plan_from_subdirectory(flow), plan_from_subdirectory(block)
    assert json.dumps(flow_plan, sort_keys=True) == json.dumps(block_plan, sort_keys=True)
    assert pushed.digest in json.dumps(flow_plan)  # the base was resolved at the registry
    assert f"localhost:{port}/{repo}/base" in json.dumps(flow_plan)


def test_no_manifest_up_to_the_git_root_is_a_usage_error(tmp_path: Path) -> None:
    root = git_repo(tmp_path / "repo")
    (tmp_path / "imagectl.yaml").write_text("version: 1\n")  # above the git root: not used
    result = imagectl(root / "docs" / "notes", "validate")
    assert result.returncode == 2, result.stderr
    assert (
        f"no imagectl.yaml found in {root / 'docs' / 'notes'} or any parent up to the git root "
        f"{root}; pass --file PATH"
    ) in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
