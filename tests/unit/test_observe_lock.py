"""The lock's records as the planner's BuiltState, built without the dataclass's __init__."""

from __future__ import annotations

import dataclasses

from imagectl.observe import _from_lock
from imagectl.plan.model import BuiltState
from tests.unit.test_lockfile import sample


def test_every_record_becomes_the_built_state_the_constructor_makes() -> None:
    lock = sample()
    built = _from_lock(lock)
    assert set(built) == set(lock.images)
    for name, rec in lock.images.items():
        expected = BuiltState(
            version=rec.version,
            digest=rec.digest,
            base_ref=rec.base.ref,
            base_digest=rec.base.digest,
            inputs=rec.inputs,
            built_at=rec.built_at,
            tags=tuple(rec.tags),
            repository=rec.repository,
            revision=rec.revision or "",
            history=rec.versions,
            base_platforms=rec.base.platforms,
        )
        assert built[name] == expected
        # every field is set (a field added to BuiltState must be added to _from_lock)
        assert set(vars(built[name])) == {f.name for f in dataclasses.fields(BuiltState)}
        assert dataclasses.replace(built[name]) == expected  # still a normal dataclass
