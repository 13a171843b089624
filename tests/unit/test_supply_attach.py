"""Signing, attesting and verifying against an in-memory registry (cosign reads the same
attachments for real in tests/e2e/test_supply_chain.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagectl.errors import Location
from imagectl.lockfile import BaseRecord, ImageRecord, Lock
from imagectl.manifest.models import BaseConfig, ImageConfig, Manifest, SignRef
from imagectl.plan.model import Action, BaseUse, StaleReason
from imagectl.registry import RegistryClient, parse_reference
from imagectl.supply import formats
from imagectl.supply.attach import read_layers, write_layers
from imagectl.supply.formats import ProvenanceFacts, attestation_tag, signature_tag
from imagectl.supply.keys import SigningKey, generate
from imagectl.supply.publish import attest_image, publish
from imagectl.supply.status import supply_cell, with_supply_state
from imagectl.supply.step import (
    BaseVerificationError,
    check_base,
    unverified_bases,
    with_refused,
)
from imagectl.supply.verify import verify_all
from tests.fixtures.fake_registry import FakeRegistry

HOST = "registry.test"
REPO = f"{HOST}/acme/app"
BASE_DIGEST = "sha256:" + "b" * 64


@pytest.fixture
def world() -> tuple[FakeRegistry, RegistryClient, str]:
    fake = FakeRegistry(host=HOST)
    digest = fake.add_image("acme/app", "1.0.0", {"a": "b"})
    fake.put("acme/app", "1.0", *fake.manifests[("acme/app", "1.0.0")])
    client = RegistryClient(transport=fake.transport, tls_registries=[HOST])
    return fake, client, digest


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate()


def facts(digest: str, **changes: object) -> ProvenanceFacts:
    base = ProvenanceFacts(
        manifest_path="imagectl.yaml",
        image="app",
        repository=REPO,
        version="1.0.0",
        digest=digest,
        base_ref="docker.io/library/debian:12",
        base_digest=BASE_DIGEST,
        revision="c0ffee",
        source="https://git.test/acme/images.git",
        inputs="sha256:" + "c" * 64,
        reasons=("new",),
        imagectl_version="0.1.0",
        builder="docker",
    )
    return ProvenanceFacts(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def manifest_for(tmp_path: Path, key: SigningKey, sbom: bool = False) -> Manifest:
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(key.public.pem())
    image = ImageConfig(
        name="app", family="f", registry=f"{HOST}/acme", context=tmp_path,
        dockerfile=tmp_path / "Dockerfile", version="1.0", base="debian", bump="patch",
        tags=("{version}",), rebuild="never", builder="docker", platforms=(), network=None,
        args=(), labels=(), target=None, secrets=(), allow_latest=False, lint_ignore=(),
        location=Location("imagectl.yaml", 1, 1),
        sign=SignRef(None, "K", None, pub), sbom=sbom,
    )  # fmt: skip
    return Manifest(tmp_path / "imagectl.yaml", (), {"app": image}, {})


VENDOR_REF = f"{REPO}:1.0.0"  # the "vendor's" base: the world's image, signed or not


def vendor_manifest(tmp_path: Path, key: SigningKey) -> Manifest:
    """A manifest whose base `vendor` must be signed by `key`."""
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(key.public.pem())
    base = BaseConfig("vendor", VENDOR_REF, Location("imagectl.yaml", 4, 3), pub)
    return Manifest(tmp_path / "imagectl.yaml", (), {}, {"vendor": base})


def child_action(name: str, base: BaseUse) -> Action:
    return Action(
        image=name, family="f", repository=f"{HOST}/acme/{name}",
        reasons=(StaleReason.NEW,), from_version=None, to_version="1.0.0",
        tags=("1.0.0",), held_tags=(), depends_on=(), base=base, inputs="x", depth=0,
    )  # fmt: skip


def lock_for(digest: str) -> Lock:
    record = ImageRecord(
        repository=REPO,
        version="1.0.0",
        digest=digest,
        tags=["1.0.0", "1.0"],
        base=BaseRecord(ref="docker.io/library/debian:12", digest=BASE_DIGEST),
        inputs="sha256:" + "c" * 64,
        built_at=datetime(2026, 1, 1, tzinfo=UTC),
        revision="c0ffee",
    )
    return Lock(images={"app": record})


def test_formats_are_cosigns() -> None:
    digest = "sha256:" + "a" * 64
    assert signature_tag(digest) == "sha256-" + "a" * 64 + ".sig"
    assert attestation_tag(digest) == "sha256-" + "a" * 64 + ".att"
    payload = json.loads(formats.simple_signing_payload(REPO, digest))
    assert payload["critical"] == {
        "identity": {"docker-reference": REPO},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature",
    }
    assert formats.pae("t", b"hello") == b"DSSEv1 1 t 5 hello"  # the DSSE spec's encoding
    statement = json.loads(formats.provenance_statement(facts(digest)))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert formats.subject_digests(statement) == [digest]
    assert formats.provenance_claims(statement) == {
        "base_digest": BASE_DIGEST,
        "revision": "c0ffee",
    }
    params = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert params == {"manifest": "imagectl.yaml", "image": "app", "version": "1.0.0",
                      "reasons": ["new"]}  # fmt: skip
    # reproducible from the lock's facts: same facts, same bytes
    assert formats.provenance_statement(facts(digest)) == formats.provenance_statement(
        facts(digest)
    )


def test_publish_writes_sig_and_att_and_is_idempotent(
    world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    fake, client, digest = world
    done = publish(client, key, facts(digest), {"bomFormat": "CycloneDX"})
    assert (done.signed, done.provenance, done.sbom) == (True, True, True)
    repo = parse_reference(REPO)
    sig = read_layers(client, repo, signature_tag(digest))
    assert [layer.media_type for layer in sig] == [formats.SIMPLESIGNING_MEDIA]
    signature = base64.b64decode(sig[0].annotations[formats.SIGNATURE_ANNOTATION])
    assert key.public.verify(sig[0].data, signature)
    att = read_layers(client, repo, attestation_tag(digest))
    assert [layer.annotations["predicateType"] for layer in att] == [
        formats.SLSA_PROVENANCE_V1,
        formats.CYCLONEDX,
    ]
    before = dict(fake.manifests)
    again = publish(client, key, facts(digest), {"bomFormat": "CycloneDX"})
    assert (again.signed, again.provenance, again.sbom) == (False, False, False)
    assert fake.manifests == before


def test_another_keys_signature_is_kept_and_ours_replaced(
    world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    _, client, digest = world
    other = generate()
    publish(client, other, facts(digest))
    publish(client, key, facts(digest))
    attest_image(
        client, key, REPO, digest, formats.provenance_statement(facts(digest, revision="d00d")),
        formats.SLSA_PROVENANCE_V1,
    )  # fmt: skip
    repo = parse_reference(REPO)
    assert len(read_layers(client, repo, signature_tag(digest))) == 2
    att = read_layers(client, repo, attestation_tag(digest))
    assert len(att) == 2  # the other key's and our newest one: our older one was replaced
    assert b"d00d" in base64.b64decode(json.loads(att[1].data)["payload"])


def test_verify_accepts_the_published_image_and_catches_tampering(
    tmp_path: Path, world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    fake, client, digest = world
    manifest = manifest_for(tmp_path, key, sbom=True)
    lock = lock_for(digest)
    publish(client, key, facts(digest), {"bomFormat": "CycloneDX"})
    [ok] = verify_all(manifest, lock, client, [], None)
    assert ok.ok and ok.checked == ["tag", "signature", "provenance", "sbom"]

    # provenance that disagrees with the lock
    attest_image(
        client, key, REPO, digest,
        formats.provenance_statement(facts(digest, base_digest="sha256:" + "e" * 64)),
        formats.SLSA_PROVENANCE_V1,
    )  # fmt: skip
    [bad] = verify_all(manifest, lock, client, ["app"], None)
    assert bad.problems == [f"provenance base digest sha256:{'e' * 64} is not the recorded "
                            f"{BASE_DIGEST}"]  # fmt: skip

    # a deleted signature
    del fake.manifests[("acme/app", signature_tag(digest))]
    [unsigned] = verify_all(manifest, lock, client, ["app"], None)
    assert "no signature by the key on the recorded digest" in unsigned.problems

    # a repointed tag
    other = fake.add_image("acme/app", "1.0.0", {"evil": "yes"})
    [moved] = verify_all(manifest, lock, client, ["app"], None)
    assert moved.problems == [f"tag 1.0.0 names {other}, not the recorded {digest} (repointed)"]


def test_check_base_requires_a_signature_by_the_key(
    tmp_path: Path, world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    _, client, digest = world
    manifest = vendor_manifest(tmp_path, key)
    action = child_action("child", BaseUse("vendor", VENDOR_REF, digest, False))
    with pytest.raises(BaseVerificationError, match=r"child: base vendor .* is not signed"):
        check_base(client, manifest, action, digest)
    publish(client, generate(), facts(digest))
    with pytest.raises(BaseVerificationError, match=r"has 1 signature\(s\) but none by"):
        check_base(client, manifest, action, digest)
    publish(client, key, facts(digest))
    check_base(client, manifest, action, digest)  # now signed by the vendor's key


def test_write_layers_round_trip(world: tuple[FakeRegistry, RegistryClient, str]) -> None:
    _, client, _ = world
    layer = formats.Layer("text/plain", b"hi", {"k": "v"})
    write_layers(client, parse_reference(REPO), "att-test", [layer])
    assert read_layers(client, parse_reference(REPO), "att-test") == [layer]


def test_status_shows_signed_and_attested(
    tmp_path: Path, world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    _, client, digest = world
    manifest = manifest_for(tmp_path, key)
    rows = [{"image": "app", "digest": digest}]
    [before] = with_supply_state(client, manifest, rows)
    assert (before["signed"], before["attested"]) == (False, False)
    assert supply_cell(before) == "UNSIGNED, no attestation"
    publish(client, key, facts(digest))
    [after] = with_supply_state(client, manifest, rows)
    assert supply_cell(after) == "signed, attested"
    unsigned_manifest = Manifest(
        manifest.root, (), {"app": replace(manifest.images["app"], sign=None)}, {}
    )
    [plain] = with_supply_state(client, unsigned_manifest, rows)
    assert plain["signed"] is None and supply_cell(plain) == "-"


def test_plan_flags_a_refused_base_and_everything_built_on_it(
    tmp_path: Path, world: tuple[FakeRegistry, RegistryClient, str], key: SigningKey
) -> None:
    _, client, digest = world
    manifest = vendor_manifest(tmp_path, key)
    actions = [
        child_action("child", BaseUse("vendor", VENDOR_REF, digest, False)),
        child_action("grandchild", BaseUse("child", "x", None, True)),
        child_action("other", BaseUse("debian", "docker.io/library/debian:12", digest, False)),
    ]
    refused = unverified_bases(client, manifest, actions)
    assert set(refused) == {"child", "grandchild"}
    assert "is not signed" in refused["child"]
    plan_json = {"actions": [{"image": a.image} for a in actions]}
    states = [a.get("state") for a in with_refused(plan_json, refused)["actions"]]
    assert states == ["base-refused", "base-refused", None]
    publish(client, key, facts(digest))
    assert unverified_bases(client, manifest, actions) == {}


def test_verify_without_any_key_says_how_to_give_one(
    tmp_path: Path,
    world: tuple[FakeRegistry, RegistryClient, str],
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, client, digest = world
    manifest = manifest_for(tmp_path, key)
    image = manifest.images["app"]
    no_public = replace(image, sign=SignRef(None, "K", None, None))
    monkeypatch.delenv("K", raising=False)
    manifest = Manifest(manifest.root, (), {"app": no_public}, {})
    [verdict] = verify_all(manifest, lock_for(digest), client, [], None)
    assert verdict.problems == [
        "sign.key_env: environment variable K is not set (it must hold the PEM private key); "
        "to verify without the private key, set `sign.public_key:` or pass --key"
    ]
    publish(client, key, facts(digest))
    pub = tmp_path / "cosign.pub"
    [ok] = verify_all(manifest, lock_for(digest), client, [], pub)  # --key
    assert ok.ok, ok.problems
