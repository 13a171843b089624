"""The supply chain end to end: a real dockerd, registry, git repository and cosign 2.5.

imagectl verifies what cosign signed (the vendor's base), cosign verifies what imagectl
signed and attested (every published tag, SLSA provenance, CycloneDX SBOM), and
`imagectl verify` catches each tampering it claims to catch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from devenv.registry import RegistryServer
from devenv.upstream import push_upstream_base
from imagectl.registry import RegistryClient
from imagectl.supply.formats import SLSA_PROVENANCE_V1, ProvenanceFacts, provenance_statement
from imagectl.supply.keys import load_signing_key
from imagectl.supply.publish import attest_image
from tests.e2e.test_reconcile import GIT_ENV, GitOps, make_gitops
from tests.fixtures.builders import MANIFEST_ACCEPT
from tests.fixtures.verifiers import Cosign, Skopeo

pytestmark = pytest.mark.e2e

PASSPHRASE = "canary-passphrase-7f3a9c"  # must never appear in any output or artefact
VENDOR_PASSWORD = "vendor-pass"


def keygen(cosign: Cosign, directory: Path) -> tuple[Path, Path]:
    """A vendor key pair written by cosign itself."""
    directory.mkdir(parents=True, exist_ok=True)
    done = cosign.run("generate-key-pair", env={"COSIGN_PASSWORD": VENDOR_PASSWORD}, cwd=directory)
    assert done.returncode == 0, done.stderr
    return directory / "cosign.key", directory / "cosign.pub"


def make_repo(tmp_path: Path, host: str, upstream_ref: str, vendor_pub: Path) -> GitOps:
    """The reconcile story's git-ops repository (base on the vendor's upstream, app on base),
    signed with a key from `imagectl keygen`, the upstream verified with the vendor's key."""
    repo = make_gitops(tmp_path, host, upstream_ref, images={"base": "upstream", "app": "base"})
    keys = repo.root / "keys"
    keys.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "imagectl", "keygen", str(keys / "imagectl")],
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGECTL_KEY_PASSPHRASE": PASSPHRASE},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert PASSPHRASE not in done.stdout + done.stderr
    (keys / "vendor.pub").write_bytes(vendor_pub.read_bytes())
    yaml = YAML()
    path = repo.root / "imagectl.yaml"
    data = yaml.load(path)
    data["defaults"]["sign"] = {
        "key": "keys/imagectl.key",
        "passphrase_env": "IMAGECTL_KEY_PASSPHRASE",
        "public_key": "keys/imagectl.pub",
    }
    data["bases"]["upstream"]["verify"] = {"key": "keys/vendor.pub"}
    data["families"]["all"]["images"]["base"]["sbom"] = True
    yaml.dump(data, path)
    (repo.root / ".gitignore").write_text("keys/imagectl.key\n")
    subprocess.run(["git", "add", "-A"], cwd=repo.root, check=True)
    subprocess.run(
        ["git", "commit", "-qm", "sign"], cwd=repo.root, check=True, env={**os.environ, **GIT_ENV}
    )
    return repo


def repoint_tag(host: str, repository: str, tag: str) -> str:
    """Point `tag` at another, unsigned manifest (what an attacker with push rights does)."""
    with httpx.Client(base_url=f"http://{host}", timeout=30) as http:
        got = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        got.raise_for_status()
        manifest = got.json()
        manifest["annotations"] = {**manifest.get("annotations", {}), "evil": "yes"}
        put = http.put(
            f"/v2/{repository}/manifests/{tag}",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": got.headers["content-type"]},
        )
        assert put.status_code == 201, put.text
        return str(put.headers["docker-content-digest"])


def delete_tag_manifest(host: str, repository: str, tag: str) -> None:
    with httpx.Client(base_url=f"http://{host}", timeout=30) as http:
        head = http.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        head.raise_for_status()
        digest = head.headers["docker-content-digest"]
        assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202


def provenance_facts_of(repo: GitOps, name: str, record: dict[str, Any]) -> ProvenanceFacts:
    return ProvenanceFacts(
        manifest_path="imagectl.yaml",
        image=name,
        repository=record["repository"],
        version=record["version"],
        digest=record["digest"],
        base_ref=record["base"]["ref"],
        base_digest=record["base"]["digest"],
        revision=record["revision"],
        source=None,
        inputs=record["inputs"],
        reasons=("new",),
        imagectl_version="0.1.0",
        builder="docker",
    )


def verdicts(repo: GitOps, *images: str) -> dict[str, dict[str, object]]:
    done = repo.run("verify", "--json", *images, env={"IMAGECTL_KEY_PASSPHRASE": ""})
    return {v["image"]: v | {"rc": done.returncode} for v in json.loads(done.stdout)}


def test_supply_chain_end_to_end(
    tmp_path: Path,
    builder_registry: RegistryServer,
    dockerd: str,
    cosign: Cosign,
    skopeo: Skopeo,
) -> None:
    host = builder_registry.host
    vendor_key, vendor_pub = keygen(cosign, tmp_path / "vendor")
    upstream_repo = f"vendor/busybox-{uuid.uuid4().hex[:8]}"
    upstream_digest = push_upstream_base(host, upstream_repo, "stable", "vendor build 1")
    upstream_ref = f"{host}/{upstream_repo}:stable"
    signed = cosign.sign(vendor_key, f"{host}/{upstream_repo}@{upstream_digest}", VENDOR_PASSWORD)
    assert signed.returncode == 0, signed.stderr
    repo = make_repo(tmp_path, host, upstream_ref, vendor_pub)
    env = {"IMAGECTL_KEY_PASSPHRASE": PASSPHRASE}

    # imagectl verifies what cosign signed, builds, signs and attests
    applied = repo.run("apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    lock = repo.lock()
    images = lock["images"]
    assert isinstance(images, dict)
    pub = repo.root / "keys" / "imagectl.pub"

    # cosign verifies what imagectl signed: every published tag, provenance and SBOM
    for name in ("base", "app"):
        for tag in images[name]["tags"]:
            ref = f"{host}/{repo.namespace}/{name}:{tag}"
            ok = cosign.verify(pub, ref)
            assert ok.returncode == 0, (ref, ok.stderr)
            assert images[name]["digest"] in ok.stdout
        ref = f"{host}/{repo.namespace}/{name}:1.0.0"
        attested = cosign.verify_attestation(pub, ref, "slsaprovenance1")
        assert attested.returncode == 0, attested.stderr
        statement = json.loads(
            __import__("base64").b64decode(json.loads(attested.stdout.splitlines()[0])["payload"])
        )
        assert statement["subject"][0]["digest"]["sha256"] == images[name]["digest"][7:]
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert deps[0]["digest"]["sha256"] == images[name]["base"]["digest"][7:]
        assert deps[1]["digest"]["gitCommit"] == images[name]["revision"]
    # so does containers/image (skopeo 1.18, policy.json sigstoreSigned with our key)
    for name, tag in (("base", "1"), ("app", "1.0.0"), ("app", "1.0")):
        copied = skopeo.copy_verified(f"{host}/{repo.namespace}/{name}:{tag}", pub, tmp_path)
        assert copied.returncode == 0, copied.stderr
    refused = skopeo.copy_verified(upstream_ref, pub, tmp_path)  # signed by another key
    assert refused.returncode != 0 and "signature" in refused.stderr
    sbom = cosign.verify_attestation(pub, f"{host}/{repo.namespace}/base:1.0.0", "cyclonedx")
    assert sbom.returncode == 0, sbom.stderr
    # ... and refuses another key, an unsigned image
    assert cosign.verify(vendor_pub, f"{host}/{repo.namespace}/app:1.0.0").returncode != 0
    assert cosign.verify(pub, upstream_ref).returncode != 0

    # nothing secret leaked: output, lock, labels, logs
    key_body = (repo.root / "keys" / "imagectl.key").read_text().splitlines()[1]
    leaks = [applied.stdout, applied.stderr, (repo.root / "imagectl.lock").read_text()]
    leaks += [json.dumps(repo.labels(n, "1.0.0")) for n in ("base", "app")]
    leaks += [p.read_text(errors="replace") for p in (repo.root / ".imagectl").rglob("*.log")]
    for text in leaks:
        assert PASSPHRASE not in text and key_body not in text

    # the lock records the base once, and re-applying changes nothing
    assert repo.plan()["actions"] == []
    first = verdicts(repo)
    assert all(v["ok"] for v in first.values()), first
    assert first["base"]["checked"] == ["tag", "signature", "provenance", "sbom"]
    status = json.loads(repo.ok("status", "--json"))["images"]
    assert {r["image"]: (r["signed"], r["attested"]) for r in status} == {
        "base": (True, True),
        "app": (True, True),
    }

    # tampering: a repointed tag (cosign refuses it too), a deleted signature,
    # a provenance whose base digest does not match
    evil = repoint_tag(host, f"{repo.namespace}/app", "1.0.0")
    assert evil != images["app"]["digest"]
    assert cosign.verify(pub, f"{host}/{repo.namespace}/app:1.0.0").returncode != 0
    unsigned_copy = skopeo.copy_verified(f"{host}/{repo.namespace}/app:1.0.0", pub, tmp_path)
    assert unsigned_copy.returncode != 0
    assert "A signature was required, but no signature exists" in unsigned_copy.stderr
    repointed = verdicts(repo, "app")["app"]
    assert repointed["rc"] == 1 and "repointed" in str(repointed["problems"])

    base_digest = str(images["base"]["digest"])
    key = load_signing_key(
        (repo.root / "keys" / "imagectl.key").read_bytes(), PASSPHRASE.encode(), "key"
    )
    wrong = ProvenanceFacts(
        **{
            **provenance_facts_of(repo, "base", images["base"]).__dict__,
            "base_digest": "sha256:" + "0" * 64,
        }
    )
    with RegistryClient() as client:
        attest_image(
            client, key, wrong.repository, base_digest, provenance_statement(wrong),
            SLSA_PROVENANCE_V1,
        )  # fmt: skip
    mismatch = verdicts(repo, "base")["base"]
    assert mismatch["rc"] == 1
    assert f"provenance base digest sha256:{'0' * 64} is not the recorded" in str(
        mismatch["problems"]
    )

    delete_tag_manifest(host, f"{repo.namespace}/base", base_digest.replace(":", "-") + ".sig")
    unsigned = verdicts(repo, "base")["base"]
    assert unsigned["rc"] == 1
    assert "no signature by the key on the recorded digest" in unsigned["problems"]

    # imagectl verifies what cosign signed: cosign re-signs with imagectl's own key file
    resigned = cosign.sign(
        repo.root / "keys" / "imagectl.key", f"{host}/{repo.namespace}/base@{base_digest}",
        PASSPHRASE,
    )  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    again = verdicts(repo, "base")["base"]
    assert "signature" in again["checked"]
    assert len(again["problems"]) == 1 and "provenance base digest" in str(again["problems"])


def test_unsigned_base_fails_every_image_built_on_it(
    tmp_path: Path, builder_registry: RegistryServer, dockerd: str, cosign: Cosign
) -> None:
    host = builder_registry.host
    _, vendor_pub = keygen(cosign, tmp_path / "vendor")
    other_key, _ = keygen(cosign, tmp_path / "other")
    upstream_repo = f"vendor/unsigned-{uuid.uuid4().hex[:8]}"
    digest = push_upstream_base(host, upstream_repo, "stable", "vendor build x")
    repo = make_repo(tmp_path, host, f"{host}/{upstream_repo}:stable", vendor_pub)
    env = {"IMAGECTL_KEY_PASSPHRASE": PASSPHRASE}

    # a wrong passphrase fails the apply before anything is built or pushed
    wrong_pass = repo.run("apply", env={"IMAGECTL_KEY_PASSPHRASE": "not-it"})
    said = " ".join((wrong_pass.stdout + wrong_pass.stderr).split())
    assert wrong_pass.returncode == 1 and "keys/imagectl.key: wrong passphrase" in said, said
    assert "not-it" not in said and "Traceback" not in said
    assert not (repo.root / "imagectl.lock").exists()
    with httpx.Client(base_url=f"http://{host}", timeout=30) as http:
        listed = http.get(f"/v2/{repo.namespace}/base/tags/list")
        assert listed.status_code == 404  # nothing pushed

    planned = json.loads(repo.ok("plan", "--json"))  # the plan flags it before any build
    states = {a["image"]: (a.get("state"), a.get("refused", "")) for a in planned["actions"]}
    assert states["base"][0] == "base-refused" and "is not signed" in states["base"][1]
    assert states["app"] == ("base-refused", "built on base, whose base is refused")
    text = " ".join(repo.run("plan").stdout.split())
    assert "base refused: base: base upstream" in text

    unsigned = repo.run("apply", env=env)
    assert unsigned.returncode == 1
    said = " ".join((unsigned.stdout + unsigned.stderr).split())  # the table wraps lines
    assert f"base upstream ({host}/{upstream_repo}@{digest}) is not signed" in said
    assert "refusing to build on it" in said and "app │ - -> 1.0.0 │ │ │ skipped" in said
    assert (
        not (repo.root / "imagectl.lock").exists()
        or "upstream" not in (repo.root / "imagectl.lock").read_text()
    )

    # signed by another key: still refused
    assert (
        cosign.sign(other_key, f"{host}/{upstream_repo}@{digest}", VENDOR_PASSWORD).returncode == 0
    )
    wrong = repo.run("apply", env=env)
    assert wrong.returncode == 1
    said = " ".join((wrong.stdout + wrong.stderr).split())
    assert "has 1 signature(s) but none by" in said and "vendor.pub" in said

    # signed by the vendor: builds; a signing failure (trivy fails) fails the image and
    # its floating tags do not move; the next apply adopts, signs and moves them
    vendor_key = tmp_path / "vendor" / "cosign.key"
    assert (
        cosign.sign(vendor_key, f"{host}/{upstream_repo}@{digest}", VENDOR_PASSWORD).returncode == 0
    )
    failing = tmp_path / "trivy-fails"
    failing.write_text("#!/bin/sh\necho 'scan exploded' >&2\nexit 3\n")
    failing.chmod(0o755)
    broken = repo.run("apply", env={**env, "IMAGECTL_TRIVY": str(failing)})
    said = " ".join((broken.stdout + broken.stderr).split())
    assert broken.returncode == 1, said
    assert "signing" in said and "trivy failed" in said and "floating tags were not moved" in said
    base_repo = f"{repo.namespace}/base"
    assert repo.digest("base", "1.0.0").startswith("sha256:")  # pushed and verified ...
    with httpx.Client(base_url=f"http://{host}", timeout=30) as http:
        for tag in ("1.0", "1"):  # ... but not published under the floating tags
            head = http.head(
                f"/v2/{base_repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert head.status_code == 404, tag
    fixed = repo.run("apply", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert repo.digest("base", "1") == repo.digest("base", "1.0.0")
    checked = verdicts(repo)
    assert all(v["ok"] for v in checked.values()), json.dumps(checked)
