"""Typed step events and outcome states of the per-image runner (docs/design.md section 7).

A `StepEvent` says that a step of one image finished (`done`, a fault point) or is about
to run (`begun`, progress only). Its `key` is the string the fault-injection hook and
the tests name: `start`, `built`, `tagged:<tag>`, … (the step, and for `tagged` the tag).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from imagectl.domain.producers import Producer


class OutcomeState(StrEnum):
    """Where one image of an apply ended (or stands)."""

    PENDING = "pending"
    BUILT = "built"
    ADOPTED = "adopted"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StepName(StrEnum):
    """The steps of the per-image protocol, in the order a build passes them."""

    START = "start"
    ADOPTED = "adopted"  # an identical build under the immutable tag was taken
    BUILT = "built"  # the producer made the image (build: locally; rebase: see PUSHED)
    PUSHED = "pushed"  # the image is under its immutable tag
    VERIFIED = "verified"  # the registry names what was pushed, and it is this run's
    SIGNED = "signed"  # signature and attestations attached (`sign:`)
    TAGGED = "tagged"  # one floating tag moved (detail: the tag)
    RECORDED = "recorded"  # the image is in the lock's journal


_KEYED_BY_DETAIL = frozenset({StepName.TAGGED})


@dataclass(frozen=True)
class StepEvent:
    """One step of one image: finished (`begun=False`) or about to run (`begun=True`).

    `detail` is the tag of a `tagged` step, and for the producing step (`built`,
    begun) the producer that runs (`build`, `rebase`, `adopt`).
    """

    step: StepName
    detail: str = ""
    begun: bool = False

    @property
    def key(self) -> str:
        """`tagged:1.0`, `built`, …: the fault point and test name of a finished step."""
        return f"{self.step}:{self.detail}" if self.step in _KEYED_BY_DETAIL else str(self.step)

    def __str__(self) -> str:
        return self.key

    @classmethod
    def producing(cls, producer: Producer) -> StepEvent:
        """The producer `producer` is about to run."""
        return cls(StepName.BUILT, str(producer), begun=True)


# (image, event) -> None: progress and test hooks. The engine also sends the final state
# of images that never ran (skipped, cancelled).
StepHook = Callable[[str, "StepEvent | OutcomeState"], None]

# Test hook (tests/reliability): `IMAGECTL_FAULT_KILL_AT=<image>:<key>` makes the process
# SIGKILL itself when `image` finishes the step whose key is `key` (`start`, `built`,
# `pushed`, `verified`, `signed`, `tagged:<tag>`, `recorded`, `adopted`; `*:commit` just
# before the git commit), to prove that a crash at any point of the protocol loses
# nothing. Never set it in production.
FAULT_KILL_ENV = "IMAGECTL_FAULT_KILL_AT"


def fault_point(image: str, step: str, env: Mapping[str, str] | None = None) -> None:
    """SIGKILL this process when `IMAGECTL_FAULT_KILL_AT` names `image:step` (a test hook)."""
    wanted = (os.environ if env is None else env).get(FAULT_KILL_ENV)
    if wanted and wanted == f"{image}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
