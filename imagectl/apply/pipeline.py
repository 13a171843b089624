"""The typed steps every produced image passes, in order (docs/design.md section 7).

verify -> sign -> tag -> record. A step says whether it applies to an image
(`applies`) and does its work (`run`), emitting its `StepEvent`s; the runner
announces it (a `begun` event) before running it. To add a step: a class with a
`name` (a `StepName`), `applies` and `run`, inserted in `STEPS` at its place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from imagectl.apply.steps import StepEvent, StepName
from imagectl.domain.tags import conflict_message
from imagectl.errors import RegistryError
from imagectl.labels import LABEL_REVISION
from imagectl.supply.step import provenance_facts, sign_and_attest

if TYPE_CHECKING:
    from imagectl.apply.protocol import ImageRunner, Job


class PipelineStep(Protocol):
    """One typed step of the per-image protocol."""

    name: StepName

    def applies(self, runner: ImageRunner, job: Job) -> bool:
        """Whether this image goes through this step."""

    def run(self, runner: ImageRunner, job: Job) -> None:
        """Do the step; raise an ImagectlError to fail the image."""


class Verify:
    """The registry names what the builder pushed, and it is this run's build."""

    name = StepName.VERIFIED

    def applies(self, runner: ImageRunner, job: Job) -> bool:
        return True

    def run(self, runner: ImageRunner, job: Job) -> None:
        if job.pushed_by_builder:
            runner.verify_push(job)
        job.outcome.digest = job.digest
        runner.emit(job.name, StepEvent(StepName.VERIFIED))


class Sign:
    """Sign and attest the verified digest (`sign:`); a failure fails the image."""

    name = StepName.SIGNED

    def applies(self, runner: ImageRunner, job: Job) -> bool:
        return job.image.sign is not None

    def run(self, runner: ImageRunner, job: Job) -> None:
        ctx = runner.ctx
        # an adopted build keeps the git-ops commit it was built from (its label)
        revision = job.labels.get(LABEL_REVISION) or ctx.revision
        facts = provenance_facts(
            ctx.manifest, job.image, job.action, job.digest, job.base_digest, revision, ctx.source
        )
        sign_and_attest(ctx.client, runner.keys, facts, job.image)
        runner.emit(job.name, StepEvent(StepName.SIGNED))


class Tag:
    """Move the floating tags forward only; guarded, re-read the immutable tag after."""

    name = StepName.TAGGED

    def applies(self, runner: ImageRunner, job: Job) -> bool:
        return True

    def run(self, runner: ImageRunner, job: Job) -> None:
        moved_any = runner.move_floating(job)
        job.outcome.tags_moved, job.outcome.tags_held = job.moved, job.held
        if moved_any and runner.guarded:
            runner.reread(job)  # the tags moved to what the immutable tag names


class Record:
    """Record the image in the lock's journal; then report tags refused as immutable."""

    name = StepName.RECORDED

    def applies(self, runner: ImageRunner, job: Job) -> bool:
        return True

    def run(self, runner: ImageRunner, job: Job) -> None:
        runner.record(job)
        runner.emit(job.name, StepEvent(StepName.RECORDED))
        if job.conflicts:
            repository = job.action.repository
            raise RegistryError(
                "; ".join(
                    conflict_message(c.tag, c.template, repository, c.version, c.digest)
                    for c in job.conflicts
                )
            )


STEPS: tuple[PipelineStep, ...] = (Verify(), Sign(), Tag(), Record())
