"""The file digest cache through the real CLI, files and registry: a warm plan reads no
unchanged file, and an edit that keeps a file's size is still seen.

The CLI runs in a child process whose clock is 10 s ahead, so that files written by
the test count as settled (`imagectl.filedigests.SETTLE_NS`) and are cached, as on a
checkout planned before; everything else is the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from imagectl.filedigests import cache_path

pytestmark = pytest.mark.e2e

PROBE = """\
import atexit, hashlib, os, sys
import imagectl.inputs
real_now = imagectl.inputs.now_ns
imagectl.inputs.now_ns = lambda: real_now() + 10_000_000_000
real_file_digest = hashlib.file_digest
read = []
def counting(handle, name):
    read.append(os.path.basename(handle.name))
    return real_file_digest(handle, name)
hashlib.file_digest = counting
atexit.register(lambda: sys.stderr.write("\\nREAD " + " ".join(sorted(read)) + "\\n"))
from imagectl.cli import main
sys.argv = ["imagectl"] + sys.argv[1:]
main()
"""


def plan(root: Path, *, cache: bool = True) -> tuple[str, list[str]]:
    """The inputs digest the saved plan gives `app`, and the files the process read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGECTL_")}
    env["IMAGECTL_NO_CACHE"] = "0" if cache else "1"
    out = root.parent / f"plan-{uuid.uuid4().hex[:6]}.json"
    args = ["-f", str(root / "imagectl.yaml"), "plan", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    read = next(x for x in done.stderr.splitlines() if x.startswith("READ")).split()[1:]
    actions = {a["image"]: a for a in json.loads(out.read_text())["actions"]}
    return actions["app"]["inputs"], read


def test_a_warm_plan_reads_no_unchanged_file_and_sees_a_same_size_edit(
    tmp_path: Path, dockerd: str, builder_registry: RegistryServer
) -> None:
    host = builder_registry.host
    upstream = f"upstream/filecache-{uuid.uuid4().hex[:8]}"
    push_upstream_base(host, upstream, "stable", "v1")
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /app/\n")
    (root / "app" / "main.py").write_text("print(1)\n")
    (root / "imagectl.yaml").write_text(
        f"version: 1\nregistry: {host}/filecache-{uuid.uuid4().hex[:8]}\n"
        f"bases: {{upstream: {{ref: '{host}/{upstream}:stable'}}}}\n"
        "families:\n  all:\n    images:\n"
        '      app: {from: upstream, context: app, version: "1.0"}\n'
    )

    first, read = plan(root)
    assert set(read) == {"Dockerfile", "main.py"}
    stored = json.loads(cache_path(root).read_text())["files"]
    assert sorted(os.path.basename(p) for p in stored) == ["Dockerfile", "main.py"]

    again, read = plan(root)
    assert again == first and "main.py" not in read and "Dockerfile" not in read

    (root / "app" / "main.py").write_text("print(2)\n")  # same size, same second
    changed, read = plan(root)
    assert "main.py" in read
    assert changed != first
    assert changed == plan(root, cache=False)[0]
