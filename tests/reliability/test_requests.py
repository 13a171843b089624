"""Registry requests imagectl adds per built image, counted from the registry's access log.

The fault proxy in front of the registry logs every request with its User-Agent
(it injects nothing here): that is the registry's access log, and it tells
imagectl's own requests from the builder's push. Per built image we count what
imagectl sends beyond moving its floating tags (one manifest PUT per tag, the
tag move itself) and beyond resolving the external base (once per reference per
run, not per image). The test fails when the count grows (issue 12, goal 3).

Three modes (docs/versions-and-tags.md "Requests per build"): a plain apply and
one under `--git-push` (the run claims its versions in git first) trust the
plan's view: at most 2 requests. `--guard-races` adds the reads that guard
against another apply of the same images running meanwhile without a claim.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import Repo, UpstreamFactory
from tests.reliability.fault_proxy import IMAGECTL_AGENT, FaultProxy, Seen
from tests.reliability.test_gitsync import add_remote

pytestmark = pytest.mark.reliability

IMAGES = {"base": "upstream", "app": "base"}
FLOATING = ("1.0", "1")
# imagectl's requests per built image (first build, update), beyond the builder's push
# and the tag moves; docs/versions-and-tags.md "Requests per build" says what each is
LIMITS = {"plain": (2, 2), "claimed": (2, 2), "guarded": (6, 6)}
FLAGS = {"plain": (), "claimed": ("--git-push",), "guarded": ("--guard-races",)}


def added_per_image(repo: Repo, seen: list[Seen], images: int) -> tuple[float, list[str]]:
    """imagectl's requests per image, without base resolution, the ping and the tag PUTs."""
    own = [s for s in seen if IMAGECTL_AGENT in s.agent]
    floating = "|".join(re.escape(t) for t in FLOATING)
    counted = [
        f"{s.method} {s.path}"
        for s in own
        if f"/{repo.namespace}/" in s.path
        and not (s.method == "PUT" and re.search(rf"/manifests/({floating})$", s.path))
    ]
    return len(counted) / images, counted


@pytest.mark.parametrize("mode", list(LIMITS))
def test_registry_requests_per_built_image_do_not_grow(
    mode: str,
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    args = ("apply", "--jobs", "1", *FLAGS[mode])
    upstream("v1")
    repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
    if mode == "claimed":
        add_remote(repo, tmp_path)
    proxy.reset_log()
    repo.ok(*args)
    first, first_requests = added_per_image(repo, proxy.requests(agent=None), len(IMAGES))

    upstream("v2: security fix")  # both rebuilt; their floating tags move forward
    proxy.reset_log()
    repo.ok(*args)
    update, update_requests = added_per_image(repo, proxy.requests(agent=None), len(IMAGES))

    first_limit, update_limit = LIMITS[mode]
    assert first <= first_limit, "\n".join(first_requests)
    assert update <= update_limit, "\n".join(update_requests)
    for image in IMAGES:
        for tag in FLOATING:
            assert repo.digest(image, tag) == repo.digest(image, "1.0.1")


COPY_ONLY = "ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY {name}.txt /{name}.txt\n"


def old_image_reads(repo: Repo, seen: list[Seen]) -> list[str]:
    """imagectl's reads by digest in the repository of `app`: its rebase's old manifest and
    config (`base`'s repository also serves `app`'s rebase as its base: not counted)."""
    return [
        f"{s.method} {s.path}"
        for s in seen
        if IMAGECTL_AGENT in s.agent
        and s.method == "GET"
        and f"/{repo.namespace}/app/" in s.path
        and re.search(r"/(manifests|blobs)/sha256:", s.path)
    ]


def test_a_rebase_reads_the_old_image_from_what_its_last_publish_kept(
    make_repo: Callable[..., Repo],
    upstream: UpstreamFactory,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """After a build, the next rebase reads the old config only (verify kept the
    manifest); after a rebase, the next one reads neither (issue 14, goal 5). A kept file
    that no longer matches its digests is a miss: the registry is asked, nothing fails."""
    upstream("v1")
    dockerfiles = {name: COPY_ONLY.format(name=name) for name in IMAGES}
    repo = make_repo("kept", IMAGES, upstream, host=proxy.host, dockerfiles=dockerfiles)
    text = repo.manifest.read_text().replace(
        "  network: host\n", "  network: host\n  update: auto\n"
    )
    repo.manifest.write_text(text)
    repo.git("commit", "-qam", "update: auto")
    no_builder = {"IMAGECTL_DOCKER": str(tmp_path / "no-docker")}
    repo.ok("apply")
    kept = repo.root / ".imagectl" / "cache" / "images"
    assert sorted(p.name for p in kept.iterdir()) == ["app.json", "base.json"]

    upstream("v2: security fix")
    proxy.reset_log()
    repo.ok("apply", env=no_builder)  # rebased: a builder would fail it
    reads = old_image_reads(repo, proxy.requests(agent=None))
    assert len(reads) == 1 and "/blobs/" in reads[0], reads  # the config: a build's is not kept

    upstream("v3: another fix")
    proxy.reset_log()
    repo.ok("apply", env=no_builder)
    assert old_image_reads(repo, proxy.requests(agent=None)) == []
    assert repo.lock()["app"]["version"] == "1.0.2"

    for path in kept.iterdir():  # damaged: every digest check fails, the registry answers
        path.write_text(path.read_text().replace("sha256", "sha512"))
    upstream("v4")
    proxy.reset_log()
    repo.ok("apply", env=no_builder)
    assert len(old_image_reads(repo, proxy.requests(agent=None))) == 2  # manifest and config
    for image in IMAGES:
        assert repo.digest(image, "1.0") == repo.digest(image, "1.0.3")
