"""`status` when the registry goes away: the lock's records, staleness unknown, exit 0."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.reliability.conftest import Repo, UpstreamFactory
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.record import result

pytestmark = pytest.mark.reliability

IMAGES = {"base": "upstream", "app": "base"}


def test_status_shows_the_lock_when_the_registry_is_gone(
    proxy: FaultProxy, make_repo: Callable[..., Repo], upstream: UpstreamFactory
) -> None:
    injected = "registry address (the proxy) closed after apply: nothing listens there"
    with result("faults", "status: registry unreachable", injected) as rec:
        upstream("v1")
        repo = make_repo("gitops", IMAGES, upstream, host=proxy.host)
        repo.ok("apply", "--jobs", "1")
        lock = repo.lock()
        assert sorted(lock) == ["app", "base"]
        proxy.close()

        shown = repo.run("status")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "Traceback" not in shown.stdout + shown.stderr
        rows = {
            cells[0]: cells
            for line in shown.stdout.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 6
        }
        for name, record in lock.items():
            assert rows[name][1] == record["version"]
            assert rows[name][2] == str(record["digest"])[:19]
            assert rows[name][5] == "unknown"
        assert "2 images, staleness unknown" in shown.stdout
        assert f"registry: cannot reach {proxy.host}" in shown.stdout

        as_json = json.loads(repo.ok("status", "--json"))
        assert proxy.host in as_json["registry_error"]
        for row in as_json["images"]:
            assert row["digest"] == lock[row["image"]]["digest"]
            assert row["stale"] is None and row["reasons"] is None
        rec.count = len(lock)
        rec.observed = "exit 0; the lock's version and digest per image, stale column 'unknown'"
