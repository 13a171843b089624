"""Registry requests imagectl adds per built image, counted from the registry's access log.

The fault proxy in front of the registry logs every request with its User-Agent
(it injects nothing here): that is the registry's access log, and it tells
imagectl's own requests from the builder's push. Per built image we count what
imagectl sends beyond moving its floating tags (one manifest PUT per tag, the
tag move itself) and beyond resolving the external base (once per reference per
run, not per image). The test fails when the count grows (issue 12, goal 3).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.reliability.conftest import Repo, UpstreamFactory
from tests.reliability.fault_proxy import IMAGECTL_AGENT, FaultProxy, Seen

pytestmark = pytest.mark.reliability

IMAGES = {"base": "upstream", "app": "base"}
FLOATING = ("1.0", "1")
# imagectl's requests per built image, beyond the builder's push and the tag moves
# (see docs/versions-and-tags.md "Requests per build" for what each one is)
FIRST_BUILD_LIMIT = 8
UPDATE_LIMIT = 8


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


def test_registry_requests_per_built_image_do_not_grow(
    make_repo: Callable[..., Repo], upstream: UpstreamFactory, proxy: FaultProxy
) -> None:
    upstream("v1")
    repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
    proxy.reset_log()
    repo.ok("apply", "--jobs", "1")
    first, first_requests = added_per_image(repo, proxy.requests(agent=None), len(IMAGES))

    upstream("v2: security fix")  # both rebuilt; their floating tags move forward
    proxy.reset_log()
    repo.ok("apply", "--jobs", "1")
    update, update_requests = added_per_image(repo, proxy.requests(agent=None), len(IMAGES))

    assert first <= FIRST_BUILD_LIMIT, "\n".join(first_requests)
    assert update <= UPDATE_LIMIT, "\n".join(update_requests)
    for image in IMAGES:
        for tag in FLOATING:
            assert repo.digest(image, tag) == repo.digest(image, "1.0.1")
