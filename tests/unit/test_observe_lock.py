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
        state = built[name]
        # exactly the fields the constructor takes (a field added to BuiltState must be
        # added to _from_lock), and what the constructor makes of them
        assert set(vars(state)) == {f.name for f in dataclasses.fields(BuiltState)}
        assert BuiltState(**vars(state)) == state
        assert (state.version, state.digest, state.inputs) == (rec.version, rec.digest, rec.inputs)
        assert (state.base_ref, state.base_digest) == (rec.base.ref, rec.base.digest)
        assert state.tags == tuple(rec.tags) and state.history == rec.versions
        assert state.revision == (rec.revision or "") and state.built_at == rec.built_at
