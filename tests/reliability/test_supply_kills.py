"""SIGKILL `imagectl apply` around the signing step, then re-run it (see test_kills.py).

Killed after the registry confirmed the digest but before signing ("verified"), or after
signing but before the floating tags moved ("signed"): the re-run adopts the pushed
digest, signs and attests it exactly once (no duplicate layers), moves the floating tags,
and `imagectl verify` accepts the result. A version is never published under a floating
tag unsigned.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import httpx
import pytest

from imagectl.supply.formats import attestation_tag, signature_tag
from imagectl.supply.keygen import keygen_command
from tests.fixtures.builders import MANIFEST_ACCEPT
from tests.reliability.conftest import GIT_ENV, Repo, UpstreamFactory
from tests.reliability.record import result
from tests.reliability.test_kills import (
    FLOATING,
    IMAGES,
    KILL_ENV,
    assert_like_uninterrupted,
    kill,
    pushed_versions,
)

pytestmark = pytest.mark.reliability

PASS_ENV = "IMAGECTL_KEY_PASSPHRASE"


def signed_repo(make_repo: Callable[..., Repo], upstream: UpstreamFactory) -> Repo:
    upstream("v1")
    repo = make_repo("gitops", IMAGES, upstream)
    repo.env[PASS_ENV] = "kill-test-passphrase"
    (repo.root / "keys").mkdir()
    keygen_command(repo.root / "keys" / "cosign", passphrase_env=PASS_ENV, env=repo.env)
    text = repo.manifest.read_text().replace(
        "defaults:\n",
        "defaults:\n  sign: {key: keys/cosign.key, passphrase_env: IMAGECTL_KEY_PASSPHRASE}\n",
    )
    repo.manifest.write_text(text)
    for argv in (["git", "add", "-A"], ["git", "commit", "-qm", "sign"]):
        subprocess.run(argv, cwd=repo.root, check=True, env={**GIT_ENV, "PATH": "/usr/bin:/bin"})
    return repo


def layer_count(repo: Repo, image: str, tag: str) -> int:
    host = repo.registry.host
    with httpx.Client(base_url=f"http://{host}", timeout=30) as http:
        got = http.get(
            f"/v2/{repo.namespace}/{image}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if got.status_code == 404:
            return 0
        got.raise_for_status()
        return len(got.json()["layers"])


@pytest.mark.parametrize("point", ["base:verified", "base:signed"])
def test_kill_around_signing_then_rerun_signs_once(
    point: str, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    with result("kills", f"signed apply, SIGKILL at {point}", f"{KILL_ENV}={point}") as rec:
        repo = signed_repo(make_repo, upstream)
        kill(repo, point)
        before = pushed_versions(repo)
        digest = before[("base", "1.0.0")]
        for tag in FLOATING:  # never published under a floating tag before it is signed
            assert repo.digest("base", tag) is None, tag
        signed_before = layer_count(repo, "base", signature_tag(digest))
        assert signed_before == (1 if point == "base:signed" else 0)
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert_like_uninterrupted(repo, ["1.0.0"], before)
        for image in IMAGES:
            record_digest = str(repo.lock()[image]["digest"])
            assert layer_count(repo, image, signature_tag(record_digest)) == 1
            assert layer_count(repo, image, attestation_tag(record_digest)) == 1
        verdicts = json.loads(repo.ok("verify", "--json"))
        assert all(v["ok"] for v in verdicts), verdicts
        rec.count = len(verdicts)
        rec.observed = (
            f"{signed_before} signature before the re-run; after it one signature and one "
            "attestation per image, floating tags moved, verify passes"
        )
