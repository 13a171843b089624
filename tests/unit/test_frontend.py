"""`# syntax=` frontends: read, resolved by digest, in the inputs digest, in the lock."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import imagectl.inputs
from imagectl.errors import ManifestError, RegistryError
from imagectl.filedigests import SETTLE_NS, FileDigests
from imagectl.frontend import (
    BUILD_ARG,
    frontend_build_args,
    frontend_references,
    resolve_frontends,
    syntax_directive,
    syntax_directive_of,
)
from imagectl.inputs import ContextHasher
from imagectl.lockfile import Lock, read_lock, render_lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.observe import DirectiveReader, image_inputs
from imagectl.plan.model import Action
from tests.fixtures.fake_registry import FakeRegistry
from tests.unit.test_lockfile import record
from tests.unit.test_registry_client import client_for

BODY = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
PINNED = "registry.test/tools/dockerfile:1@sha256:" + "f" * 64


def repo(tmp_path: Path, dockerfiles: dict[str, str], builder: str = "docker") -> Manifest:
    lines = [
        "version: 1",
        "registry: registry.test/acme",
        f"defaults: {{builder: {builder}}}",
        "families:",
        "  f:",
        "    from: registry.test/up/debian:12",
        "    images:",
    ]
    for name, text in dockerfiles.items():
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "Dockerfile").write_text(text)
        lines.append(f'      {name}: {{context: {name}, version: "1.0"}}')
    (tmp_path / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    return load_manifest(tmp_path / "imagectl.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# syntax=docker/dockerfile:1\n" + BODY, ("docker/dockerfile:1", 1)),
        ("# escape=`\n#syntax = x/y:2\n" + BODY, ("x/y:2", 2)),
        ("# SYNTAX=x/y:3\n" + BODY, ("x/y:3", 1)),
        ("# a comment\n# syntax=x/y:1\n" + BODY, None),  # a comment ends the directives
        ("\n# syntax=x/y:1\n" + BODY, None),
        (BODY + "# syntax=x/y:1\n", None),
        (BODY, None),
    ],
)
def test_the_syntax_directive_is_read_as_buildkit_reads_it(
    tmp_path: Path, text: str, expected: tuple[str, int] | None
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    assert syntax_directive(path) == expected
    assert syntax_directive_of(text.encode()) == expected
    crlf = text.replace("\n", "\r\n").encode()
    path.write_bytes(crlf)
    assert syntax_directive_of(crlf) == syntax_directive(path) == expected


def read_through_cache(root: Path, dockerfile: Path) -> tuple[str, int] | None:
    cache = FileDigests(root)
    found = DirectiveReader(ContextHasher(root, cache), cache)(dockerfile)
    cache.save()
    return found


def test_a_plan_reads_the_directive_of_an_unchanged_dockerfile_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dockerfile = tmp_path / "ctx" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text("# syntax=x/y:1\n" + BODY)
    settled = imagectl.inputs.now_ns() + 2 * SETTLE_NS
    monkeypatch.setattr(imagectl.inputs, "now_ns", lambda: settled)
    assert read_through_cache(tmp_path, dockerfile) == ("x/y:1", 1)
    real_read = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        assert path != dockerfile, "the Dockerfile was read"
        return real_read(path)

    with monkeypatch.context() as patched:  # nothing opens the Dockerfile now
        patched.setattr(Path, "read_bytes", read_bytes)
        patched.setattr("hashlib.file_digest", lambda *a: pytest.fail("hashed"))
        assert read_through_cache(tmp_path, dockerfile) == ("x/y:1", 1)
    dockerfile.write_text("# syntax=x/y:22\n" + BODY)  # another size: another stat
    assert read_through_cache(tmp_path, dockerfile) == ("x/y:22", 1)
    dockerfile.write_text(BODY)
    assert read_through_cache(tmp_path, dockerfile) is None
    assert read_through_cache(tmp_path, dockerfile) is None


@pytest.mark.parametrize("note", [["x/y:9"], ["x/y:9", "1"], [1, 1], "x/y:9", 7])
def test_a_damaged_note_is_read_again(tmp_path: Path, note: object) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# syntax=x/y:1\n" + BODY)
    cache = FileDigests(tmp_path)
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    cache.put_note("syntax:" + digest, note)
    assert DirectiveReader(ContextHasher(tmp_path, cache), cache)(dockerfile) == ("x/y:1", 1)


def test_only_docker_images_have_a_frontend_and_bad_references_are_located(
    tmp_path: Path,
) -> None:
    text = "# syntax=registry.test/tools/dockerfile:1\n" + BODY
    docker = repo(tmp_path / "d", {"app": text, "plain": BODY})
    refs = frontend_references(docker.images.values(), docker.root_dir)
    assert {k: str(v) for k, v in refs.items()} == {"app": "registry.test/tools/dockerfile:1"}
    buildah = repo(tmp_path / "b", {"app": text}, builder="buildah")
    assert frontend_references(buildah.images.values(), buildah.root_dir) == {}
    bad = repo(tmp_path / "x", {"app": "# syntax=Not A Ref\n" + BODY})
    with pytest.raises(ManifestError, match=r"^app/Dockerfile:1: # syntax=Not A Ref: invalid"):
        frontend_references(bad.images.values(), bad.root_dir)


def test_frontends_are_resolved_by_one_head_each_and_pinned_ones_by_none(tmp_path: Path) -> None:
    fake = FakeRegistry()
    digest = fake.add_image("tools/dockerfile", "1")
    tagged = "# syntax=registry.test/tools/dockerfile:1\n" + BODY
    manifest = repo(tmp_path, {"a": tagged, "b": tagged, "c": f"# syntax={PINNED}\n" + BODY})
    with client_for(fake) as client:
        pinned = resolve_frontends(manifest.images.values(), manifest.root_dir, client)
    assert pinned == {
        "a": f"registry.test/tools/dockerfile:1@{digest}",
        "b": f"registry.test/tools/dockerfile:1@{digest}",
        "c": PINNED,
    }
    assert [c for c in fake.calls if "manifests" in c[1]] == [
        ("HEAD", "/v2/tools/dockerfile/manifests/1")
    ]


def test_a_missing_frontend_fails_the_plan(tmp_path: Path) -> None:
    manifest = repo(tmp_path, {"a": "# syntax=registry.test/tools/gone:1\n" + BODY})
    with client_for(FakeRegistry()) as client, pytest.raises(RegistryError, match="gone:1"):
        resolve_frontends(manifest.images.values(), manifest.root_dir, client)


def test_the_frontend_digest_is_an_input_and_no_frontend_changes_nothing(tmp_path: Path) -> None:
    manifest = repo(tmp_path, {"app": BODY})
    plain = image_inputs(manifest)
    assert image_inputs(manifest, frontends={}) == plain
    one = image_inputs(manifest, frontends={"app": PINNED})
    other = image_inputs(manifest, frontends={"app": PINNED.replace("f" * 64, "e" * 64)})
    assert len({plain["app"], one["app"], other["app"]}) == 3


def test_the_build_runs_the_pinned_frontend() -> None:
    assert frontend_build_args(PINNED) == {BUILD_ARG: PINNED}
    assert frontend_build_args(None) == {}


def test_the_lock_records_the_frontend_only_when_there_is_one(tmp_path: Path) -> None:
    lock = Lock().with_image("app", record(frontend=PINNED)).with_image("plain", record())
    text = render_lock(lock)
    assert text.count("frontend:") == 1 and f'frontend: "{PINNED}"' in text
    write_lock(tmp_path / "imagectl.lock", lock)
    read = read_lock(tmp_path / "imagectl.lock")
    assert read is not None and read.images["app"].frontend == PINNED
    assert read.images["plain"].frontend is None
    assert "frontend" not in render_lock(Lock().with_image("plain", record()))


def test_a_saved_plan_keeps_the_pinned_frontend() -> None:
    data = {
        "image": "app",
        "family": "f",
        "repository": "registry.test/acme/app",
        "reasons": ["new"],
        "from_version": None,
        "to_version": "1.0.0",
        "tags": ["1.0.0"],
        "depends_on": [],
        "base": {"name": "b", "ref": "r/b:1", "digest": None, "internal": False},
        "inputs": "sha256:" + "1" * 64,
        "depth": 0,
    }
    old = Action.from_saved(data)  # a plan saved before frontends existed
    assert old.frontend is None and "frontend" not in old.to_saved()
    pinned = Action.from_saved({**data, "frontend": PINNED})
    assert Action.from_saved(pinned.to_saved()).frontend == PINNED
