"""Claims in the lock: who may build a version, and what a dead run's claim becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagectl.apply.claims import (
    DEFAULT_TTL,
    Me,
    claim_lines,
    claim_ttl,
    is_live,
    rebase,
    resolve,
    with_claims,
    withhold,
    without_mine,
)
from imagectl.errors import UsageError
from imagectl.lockfile import (
    BaseRecord,
    ClaimRecord,
    ImageRecord,
    Lock,
    read_lock,
    render_lock,
    write_lock,
)
from imagectl.plan.model import Action, BaseUse, Plan, StaleReason

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ME = Me(host="runner-a", pid=100)
TTL = timedelta(hours=1)


def action(name: str, parent: str | None = None, version: str = "1.0.0") -> Action:
    return Action(
        image=name,
        family="all",
        repository=f"reg/{name}",
        reasons=(StaleReason("new"),),
        from_version=None,
        to_version=version,
        tags=(version, "1"),
        held_tags=(),
        depends_on=(parent,) if parent else (),
        base=BaseUse(parent or "upstream", f"reg/{parent or 'up'}:1", None, parent is not None),
        inputs=f"sha256:{name}",
        depth=1 if parent else 0,
    )


def claim(host: str = "runner-b", pid: int = 7, at: datetime = T0) -> ClaimRecord:
    return ClaimRecord(version="1.0.0", inputs="sha256:x", host=host, pid=pid, claimed_at=at)


def record(version: str) -> ImageRecord:
    return ImageRecord(
        repository="reg/a",
        version=version,
        digest=f"sha256:{version}",
        tags=[version],
        base=BaseRecord(ref="up:1", digest="sha256:up"),
        inputs="sha256:a",
        built_at=T0,
        revision=None,
    )


def test_a_claim_from_another_host_is_live_for_the_ttl() -> None:
    assert is_live(claim(), T0 + TTL - timedelta(seconds=1), me=ME, ttl=TTL)
    assert not is_live(claim(), T0 + TTL, me=ME, ttl=TTL)


def test_a_claim_on_this_host_is_live_while_its_process_is() -> None:
    mine_host = claim(host="runner-a", pid=7)
    assert is_live(mine_host, T0, me=ME, ttl=TTL, alive=lambda pid: True)
    assert not is_live(mine_host, T0, me=ME, ttl=TTL, alive=lambda pid: False)  # killed
    assert not is_live(claim(host="runner-a", pid=100), T0, me=ME, ttl=TTL)  # our own


def test_resolve_drops_dead_claims_and_keeps_live_ones() -> None:
    lock = Lock(claims={"a": claim(), "b": claim(host="runner-a", pid=9)})
    resolved = resolve(lock, T0, me=ME, ttl=TTL, alive=lambda pid: False)
    assert set(resolved.live) == {"a"} and set(resolved.dropped) == {"b"}
    assert set(resolved.lock.claims) == {"a"}


def test_withhold_leaves_out_claimed_images_and_what_is_built_on_them() -> None:
    plan = Plan(actions=(action("a"), action("b", "a"), action("c")), unchanged=())
    kept, lines = withhold(plan, {"a": claim()})
    assert [x.image for x in kept.actions] == ["c"]
    assert lines[0].startswith("a: 1.0.0 is claimed by pid 7 on runner-b since 2026-11-30T12:00")
    assert lines[1] == "b: waits for a, claimed by another run"
    assert withhold(plan, {}) == (plan, [])


def test_claims_round_trip_and_a_lock_without_claims_is_unchanged(tmp_path: Path) -> None:
    plan = Plan(actions=(action("a"),), unchanged=())
    plain = Lock(images={"z": record("0.9.0")})
    assert "claims" not in render_lock(plain)  # byte-identical to earlier versions
    claimed = with_claims(plain, plan, T0.replace(microsecond=5), me=ME, revision="abc")
    path = tmp_path / "imagectl.lock"
    write_lock(path, claimed)
    assert read_lock(path) == claimed
    assert claimed.claims["a"].version == "1.0.0" and claimed.claims["a"].pid == 100
    assert without_mine(claimed, ME) == plain
    assert claim_lines(plan) == ["a - -> 1.0.0 (new)"]


def test_rebase_reapplies_our_records_on_the_remote_lock() -> None:
    upstream = Lock(images={"b": record("2.0.0")}, claims={"c": claim()})
    ours = Lock(images={"a": record("1.0.1")}, claims={"a": claim(host="runner-a", pid=100)})
    merged = rebase(upstream, ours, {"a"}, ME)
    assert set(merged.images) == {"a", "b"} and set(merged.claims) == {"c"}


def test_claim_ttl_from_the_environment() -> None:
    assert claim_ttl({}) == DEFAULT_TTL
    assert claim_ttl({"IMAGECTL_CLAIM_TTL": "90"}) == timedelta(seconds=90)
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(UsageError, match="IMAGECTL_CLAIM_TTL"):
            claim_ttl({"IMAGECTL_CLAIM_TTL": bad})
