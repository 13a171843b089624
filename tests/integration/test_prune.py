"""`prune` against the real registry: dry run, --apply, protections, delete disabled."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from devenv.registry import RegistryServer, start_registry
from imagectl.errors import RegistryError
from imagectl.labels import LABEL_BASE_DIGEST, LABEL_BASE_NAME, LABEL_CREATED, LABEL_REVISION
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, write_lock
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import Manifest
from imagectl.prune import prune_command
from imagectl.registry import RegistryClient, StaticCredentials, parse_reference
from tests.fixtures.oci import push_image

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=200)
UPSTREAM = "sha256:" + "e" * 64


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(credentials=StaticCredentials({})) as client:
        yield client


def stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def write_manifest(tmp: Path, prefix: str) -> Manifest:
    for ctx in ("base", "app"):
        (tmp / ctx).mkdir(parents=True)
        (tmp / ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp / "imagectl.yaml").write_text(
        f"""version: 1
registry: {prefix}
bases:
  upstream:
    ref: {prefix.split("/")[0]}/upstream/debian:bookworm
families:
  runtime:
    images:
      base: {{context: base, version: "1.0", from: upstream}}
      app: {{context: app, version: "2.0", from: base}}
"""
    )
    return load_manifest(tmp / "imagectl.yaml")


def record(repository: str, version: str, digest: str, base_ref: str, base: str) -> ImageRecord:
    return ImageRecord(
        repository=repository,
        version=version,
        digest=digest,
        tags=[version],
        base=BaseRecord(ref=base_ref, digest=base),
        inputs="sha256:" + "1" * 64,
        built_at=OLD,
        revision=None,
    )


class World:
    """base 1.0.0-1.0.7 and app 2.0.0-2.0.3 pushed, a lock, a floating tag."""

    def __init__(self, registry: RegistryServer, repo: str, tmp: Path) -> None:
        self.prefix = f"{registry.host}/{repo}"
        self.manifest = write_manifest(tmp, self.prefix)
        self.base: dict[str, str] = {}
        self.app: dict[str, str] = {}
        with httpx.Client(base_url=registry.url, timeout=30) as http:
            labels: dict[str, str] = {}
            for patch in range(8):
                version = f"1.0.{patch}"
                created = NOW - timedelta(days=10) if patch == 5 else OLD
                labels = {LABEL_CREATED: stamp(created), LABEL_BASE_DIGEST: UPSTREAM}
                pushed = push_image(http, f"{repo}/base", version, labels, content=version)
                self.base[version] = pushed.digest
                if version == "1.0.1":  # the same bytes again: a floating tag on 1.0.1
                    push_image(http, f"{repo}/base", "stable", labels, content=version)
            uses = {"2.0.0": "1.0.3", "2.0.1": "1.0.3", "2.0.2": "1.0.4", "2.0.3": "1.0.7"}
            for version, base_version in uses.items():
                labels = {LABEL_CREATED: stamp(OLD), LABEL_BASE_DIGEST: self.base[base_version]}
                pushed = push_image(http, f"{repo}/app", version, labels, content=version)
                self.app[version] = pushed.digest
        base_ref = f"{self.prefix}/base:1.0.2"
        lock = Lock()
        lock = lock.with_image(
            "base",
            record(f"{self.prefix}/base", "1.0.2", self.base["1.0.2"], "x/up:1", UPSTREAM),
        )
        lock = lock.with_image(
            "app",
            record(f"{self.prefix}/app", "2.0.3", self.app["2.0.3"], base_ref, self.base["1.0.7"]),
        )
        write_lock(self.manifest.lock_path, lock)

    def exists(self, client: RegistryClient, image: str, digest: str) -> bool:
        ref = parse_reference(f"{self.prefix}/{image}@{digest}")
        return client.head_manifest(ref) is not None


def run(
    manifest: Manifest,
    client: RegistryClient | None,
    *,
    older_than: str | None = None,
    apply: bool = False,
) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=250, color_system=None)
    code = prune_command(
        manifest,
        keep=2,
        older_than=older_than,
        apply=apply,
        now=NOW,
        console=console,
        client=client,
    )
    return code, buffer.getvalue()


def rows(output: str, images: tuple[str, ...] = ("base", "app")) -> dict[tuple[str, str], str]:
    """(image, version) -> the rest of its table row."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 6 and cells[0] in images:
            found[(cells[0], cells[1])] = " | ".join(cells[2:])
    return found


def test_dry_run_lists_what_would_go_and_deletes_nothing(
    registry: RegistryServer, repo: str, tmp_path: Path, client: RegistryClient
) -> None:
    world = World(registry, repo, tmp_path)
    code, output = run(world.manifest, None)  # the default client of the CLI
    assert code == 0
    table = rows(output)
    doomed = {key for key, row in table.items() if "| delete |" in row}
    assert doomed == {
        ("base", "1.0.0"),
        ("base", "1.0.3"),
        ("base", "1.0.5"),
        ("app", "2.0.0"),
        ("app", "2.0.1"),
    }
    assert "newest 2" in table[("base", "1.0.7")]
    # named by the lock and by the kept app 2.0.3: one reason, not two
    assert table[("base", "1.0.7")].count("base of app 2.0.3") == 1
    assert "in the lock" in table[("base", "1.0.2")]
    assert "tag stable" in table[("base", "1.0.1")]
    assert "base of app 2.0.2" in table[("base", "1.0.4")]
    assert "in the lock" in table[("app", "2.0.3")]
    assert "Would delete 5 versions (5 digests), keep 7" in output
    assert "--apply" in output
    for digests, image in ((world.base, "base"), (world.app, "app")):
        assert all(world.exists(client, image, d) for d in digests.values())


def test_age_rule_and_apply_delete_exactly_the_doomed_digests(
    registry: RegistryServer, repo: str, tmp_path: Path, client: RegistryClient
) -> None:
    world = World(registry, repo, tmp_path)
    code, output = run(world.manifest, client, older_than="90d")
    assert code == 0
    assert "younger than 90d" in rows(output)[("base", "1.0.5")]
    code, output = run(world.manifest, client, older_than="90d", apply=True)
    assert code == 0, output
    assert "Deleted 4 of 4 digests" in output
    gone = {("base", "1.0.0"), ("base", "1.0.3"), ("app", "2.0.0"), ("app", "2.0.1")}
    assert {k for k, row in rows(output).items() if "| deleted |" in row} == gone
    for image, digests in (("base", world.base), ("app", world.app)):
        for version, digest in digests.items():
            assert world.exists(client, image, digest) == ((image, version) not in gone)
    stable = client.head_manifest(parse_reference(f"{world.prefix}/base:stable"))
    assert stable is not None and stable.digest == world.base["1.0.1"]
    tags = client.list_tags(parse_reference(f"{world.prefix}/base:x"))
    assert "1.0.0" not in tags and "1.0.3" not in tags and "1.0.5" in tags
    # a second run finds nothing more to do
    code, output = run(world.manifest, client, older_than="90d", apply=True)
    assert code == 0 and "Nothing to prune" in output


def test_registry_with_delete_disabled_gives_a_clear_error(
    tmp_path: Path, repo: str, client: RegistryClient
) -> None:
    server = start_registry(tmp_path / "no-delete", delete_enabled=False)
    try:
        world = World(server, repo, tmp_path / "repo")
        with pytest.raises(RegistryError) as info:
            run(world.manifest, client, apply=True)
        message = str(info.value)
        assert "storage.delete.enabled: true" in message
        assert "nothing was deleted" in message
        assert all(world.exists(client, "base", d) for d in world.base.values())
    finally:
        server.stop()


PER_VERSION_MANIFEST = """version: 1
registry: {prefix}
bases:
  upstream: {{ref: "{host}/upstream/debian:bookworm"}}
families:
  runtime:
    images:
      tools:
        context: tools
        version: "1.0"
        from: upstream
        tags: ["{{version}}", "{{version}}-{{base_tag}}", "sha-{{sha}}", "{{major}}.{{minor}}"]
"""


def test_per_version_tags_go_with_their_version(
    registry: RegistryServer, repo: str, tmp_path: Path, client: RegistryClient
) -> None:
    prefix = f"{registry.host}/{repo}"
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "imagectl.yaml").write_text(
        PER_VERSION_MANIFEST.format(prefix=prefix, host=registry.host)
    )
    manifest = load_manifest(tmp_path / "imagectl.yaml")
    pushed: dict[str, str] = {}
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        for patch in range(5):
            version = f"1.0.{patch}"
            sha = f"{patch}" * 40
            labels = {
                LABEL_CREATED: stamp(OLD + timedelta(days=patch)),
                LABEL_BASE_DIGEST: UPSTREAM,
                LABEL_BASE_NAME: f"{registry.host}/upstream/debian:bookworm",
                LABEL_REVISION: sha,
            }
            own = [version, f"{version}-bookworm", f"sha-{sha[:7]}"]
            shared = {"1.0.1": ["stable"], "1.0.4": ["1.0"]}.get(version, [])
            for tag in own + shared:
                pushed[tag] = push_image(http, f"{repo}/tools", tag, labels, content=version).digest
    code, output = run(manifest, client)
    assert code == 0, output
    table = rows(output, ("tools",))
    assert {k for k, row in table.items() if "| delete |" in row} == {
        ("tools", "1.0.0"),
        ("tools", "1.0.2"),
    }
    assert "its own tags go too: 1.0.0-bookworm, sha-0000000" in table[("tools", "1.0.0")]
    assert "tag stable" in table[("tools", "1.0.1")]
    assert "tag 1.0" in table[("tools", "1.0.4")]
    assert "tag 1.0-bookworm" not in output and "tag sha-" not in output

    code, output = run(manifest, client, apply=True)
    assert code == 0 and "Deleted 2 of 2 digests" in output, output
    tags = set(client.list_tags(parse_reference(f"{prefix}/tools:x")))
    gone = {"1.0.0", "1.0.0-bookworm", "sha-0000000", "1.0.2", "1.0.2-bookworm", "sha-2222222"}
    assert not tags & gone
    kept = {"1.0.1", "1.0.1-bookworm", "stable", "1.0.3", "1.0.4", "1.0.4-bookworm", "1.0"}
    assert kept <= tags
