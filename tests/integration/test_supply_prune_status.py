"""`prune --apply` deletes a version's `.sig`/`.att` with it, on the real registry; the
attachments of kept versions stay (no orphans either way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.registry import RegistryServer
from imagectl.registry import RegistryClient, StaticCredentials, parse_reference
from imagectl.supply.attach import attachment_state
from imagectl.supply.formats import ProvenanceFacts
from imagectl.supply.keys import generate
from imagectl.supply.publish import publish
from tests.integration.test_prune import World, run

pytestmark = pytest.mark.integration


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(credentials=StaticCredentials({})) as client:
        yield client


def test_prune_deletes_signatures_and_attestations_with_the_version(
    registry: RegistryServer, repo: str, tmp_path: Path, client: RegistryClient
) -> None:
    world = World(registry, repo, tmp_path)
    key = generate()
    repository = f"{world.prefix}/base"
    for version, digest in world.base.items():
        facts = ProvenanceFacts(
            "imagectl.yaml", "base", repository, version, digest, "x/up:1", "sha256:" + "e" * 64,
            None, None, "sha256:" + "1" * 64, ("new",), "0.1.0", "docker",
        )  # fmt: skip
        publish(client, key, facts)
    ref = parse_reference(repository)
    assert all(
        attachment_state(client, ref, d) == {"signed": True, "attested": True}
        for d in world.base.values()
    )
    code, _ = run(world.manifest, client, apply=True)
    assert code == 0
    gone = [v for v, d in world.base.items() if not world.exists(client, "base", d)]
    kept = [v for v in world.base if v not in gone]
    assert gone and kept
    for version in gone:
        state = attachment_state(client, ref, world.base[version])
        assert state == {"signed": False, "attested": False}, version
    for version in kept:
        state = attachment_state(client, ref, world.base[version])
        assert state == {"signed": True, "attested": True}, version
