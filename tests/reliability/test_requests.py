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
