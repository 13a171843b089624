"""The immutable tag is re-read after the push (always) and after the floating tags
move (under `--guard-races`, the reads against an unclaimed rival).

Another apply can push the same version between our push and our re-read (the
registry has no compare-and-swap). The fault proxy holds one of our requests at
that moment while the test repoints the immutable tag to another clone's build
of the same version; the run must fail that image loudly ("lost a race"), record
the registry's build in the lock, and the next run must plan from there.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.builders import MANIFEST_ACCEPT
from tests.reliability.conftest import Registry, Repo, UpstreamFactory
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

IMAGES = {"base": "upstream"}
FLOATING = ("1.0", "1")


def copy_image(host: str, source: str, target: str, tag: str) -> str:
    """Push `source:tag` as `target:tag` on the registry (blob mounts, then the manifest)."""
    with httpx.Client(base_url=f"http://{host}/v2", timeout=30) as http:
        got = http.get(f"/{source}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        got.raise_for_status()
        manifest = got.json()
        assert "layers" in manifest, "an image index: copy its children first"
        for blob in [manifest["config"], *manifest["layers"]]:
            mounted = http.post(
                f"/{target}/blobs/uploads/", params={"mount": blob["digest"], "from": source}
            )
            assert mounted.status_code == 201, mounted.text
        put = http.put(
            f"/{target}/manifests/{tag}",
            content=got.content,
            headers={"Content-Type": got.headers["Content-Type"]},
        )
        put.raise_for_status()
        return str(put.headers["Docker-Content-Digest"])


def rival_build(make_repo: Callable[..., Repo], upstream: UpstreamFactory) -> Repo:
    """Another clone's build of the same version with other content, in its own namespace."""
    rival = make_repo("rival", IMAGES, upstream)
    (rival.root / "base" / "base.txt").write_text("base from the rival clone\n")
    rival.commit_all("rival content")
    rival.ok("apply")
    return rival


@pytest.mark.parametrize(
    ("held", "method", "path", "flags"),
    [
        ("after the push", "GET", r"/base/manifests/1\.0\.0$", ()),  # verify's read: always
        ("while moving a floating tag", "PUT", r"/base/manifests/1\.0$", ("--guard-races",)),
    ],
)
def test_immutable_tag_repointed_by_a_rival_is_a_lost_race(
    held: str,
    method: str,
    path: str,
    flags: tuple[str, ...],
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    registry: Registry,
) -> None:
    injected = f"another clone's 1.0.0 pushed over ours {held} (request held by the proxy)"
    with result("races", f"immutable tag repointed {held}", injected) as rec:
        upstream("v1")
        rival = rival_build(make_repo, upstream)
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        hold = proxy.add("hold", method, f"/{repo.namespace}{path}")
        run = repo.start("apply", "--jobs", "1", *flags)
        proxy.wait_hits(hold, 1)
        theirs = copy_image(
            registry.host, rival.repository("base"), repo.repository("base"), "1.0.0"
        )
        hold.release.set()
        code = run.wait()

        assert code == 1, run.output
        assert "lost a race" in run.output, run.output
        assert repo.digest("base", "1.0.0") == theirs, "the rival's tag was repointed back"
        recorded = repo.lock()["base"]
        assert recorded["digest"] == theirs, "the lock does not record the registry's build"
        assert recorded["inputs"] == rival.lock()["base"]["inputs"]
        assert repo.lock_committed()

        # the next run plans from the registry's truth: our content is the next version
        rerun = repo.run("apply", "--jobs", "1")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        ours = repo.lock()["base"]
        assert ours["version"] == "1.0.1"
        assert repo.digest("base", "1.0.0") == theirs
        for tag in FLOATING:
            assert repo.digest("base", tag) == ours["digest"]
        assert repo.planned() == []
        rec.count = 1
        rec.observed = (
            "failed with 'lost a race', the lock recorded the rival's 1.0.0, "
            "the re-run built 1.0.1 on top"
        )
