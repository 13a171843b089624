"""Producers: what puts an image under its immutable tag (docs/design.md section 7).

The runner tries the producers of an action's chain in order; the first that takes
the image wins. A producer fills the `Job` (digest, state, the manifest when it has
the bytes in hand) and says whether it took the image. To add one: a class with a
`name` (a `Producer`) and `produce(runner, job) -> bool`, registered in `PRODUCERS`,
and a place in `chain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from imagectl.apply.steps import OutcomeState, StepEvent, StepName
from imagectl.builders.base import Builder, BuildRequest
from imagectl.domain.producers import Producer
from imagectl.labels import LABEL_CREATED
from imagectl.plan.model import Action
from imagectl.rebase.publish import RebaseRefused, RebaseRequest
from imagectl.registry import parse_reference

if TYPE_CHECKING:
    from imagectl.apply.protocol import ImageRunner, Job


@runtime_checkable
class IdentifiesBuilds(Protocol):
    """A builder that knows the image id (config digest) of the build it made for `req`.

    With it, the read after the push tells this run's build from another one without
    fetching the config: the manifest under the tag names that config digest.
    """

    def image_id(self, req: BuildRequest) -> str | None: ...


def built_image_id(builder: Builder, req: BuildRequest) -> str | None:
    """The config digest `builder` reports for its build of `req` (None: unknown)."""
    return builder.image_id(req) if isinstance(builder, IdentifiesBuilds) else None


class ProducerStep(Protocol):
    """One way of producing an image."""

    name: Producer

    def produce(self, runner: ImageRunner, job: Job) -> bool:
        """Put the image under its immutable tag; False to leave it to the next producer."""


class Adopt:
    """An identical build already under the immutable tag (an earlier run's push)."""

    name = Producer.ADOPT

    def produce(self, runner: ImageRunner, job: Job) -> bool:
        found = runner.existing(job.action, job.base_digest)
        if found is None:
            return False
        job.digest, job.labels = found
        job.outcome.state = OutcomeState.ADOPTED
        runner.emit(job.name, StepEvent(StepName.ADOPTED))
        return True


class Rebase:
    """The old image's own layers on the new base: manifest and config PUTs, no build.

    The old image is checked first (its first layers must be exactly the old base's);
    when it does not pass, the log says why and the next producer (build) runs.
    """

    name = Producer.REBASE

    def produce(self, runner: ImageRunner, job: Job) -> bool:
        action = job.action
        req = runner.request(action, job.image, job.base_pinned, job.base_digest)
        req.log_path.parent.mkdir(parents=True, exist_ok=True)
        base_repo = parse_reference(job.base_pinned)
        rebase = RebaseRequest(
            repository=parse_reference(action.repository),
            old_digest=action.old_digest or "",
            old_base=base_repo.with_digest(action.old_base_digest or ""),
            new_base=base_repo.with_digest(job.base_digest),
            labels=req.labels,
            annotations=req.annotations,
            created=req.labels[LABEL_CREATED],
            known=runner.published.load(job.name),
        )
        try:
            manifest, docs = runner.rebaser.rebase_docs(rebase)
        except RebaseRefused as exc:
            with req.log_path.open("a", encoding="utf-8") as log:
                log.write(f"imagectl: not rebased, building instead: {exc}\n")
            return False
        again = runner.existing(action, job.base_digest) if runner.guarded else None
        if again is not None:  # someone pushed meanwhile
            job.digest, job.labels = again
            job.outcome.state = OutcomeState.ADOPTED
        else:
            runner.ctx.client.put_manifest(job.ref, manifest)
            runner.published.save(job.name, docs)  # what its next rebase reads
            job.digest, job.manifest = manifest.digest, manifest  # the bytes are in hand
            job.outcome.state = OutcomeState.BUILT
            with req.log_path.open("a", encoding="utf-8") as log:
                log.write(f"imagectl: rebased {action.old_digest} onto {job.base_pinned}\n")
        runner.emit(job.name, StepEvent(StepName.PUSHED))
        return True


class Build:
    """The image's builder builds it and pushes it under the immutable tag."""

    name = Producer.BUILD

    def produce(self, runner: ImageRunner, job: Job) -> bool:
        builder = runner.builder(job.image.builder)
        req = runner.request(job.action, job.image, job.base_pinned, job.base_digest)
        req.log_path.parent.mkdir(parents=True, exist_ok=True)
        builder.build(req)
        job.outcome.state = OutcomeState.BUILT
        runner.emit(job.name, StepEvent(StepName.BUILT))
        if not runner.ctx.push:
            return True
        job.request, job.image_id = req, built_image_id(builder, req)
        # guarded, a rival may have pushed this version during the build: look again
        again = runner.existing(job.action, job.base_digest) if runner.guarded else None
        if again is not None:
            job.digest, job.labels = again
            job.outcome.state = OutcomeState.ADOPTED
        else:
            runner.emit(job.name, StepEvent(StepName.PUSHED, begun=True))
            job.digest = builder.push(req)
            job.pushed_by_builder = True
        runner.emit(job.name, StepEvent(StepName.PUSHED))
        return True


PRODUCERS: Mapping[Producer, ProducerStep] = {
    Producer.ADOPT: Adopt(),
    Producer.REBASE: Rebase(),
    Producer.BUILD: Build(),
}


def chain(action: Action, *, push: bool) -> tuple[Producer, ...]:
    """The producers to try for `action`, in order.

    Adopt first unless the plan just found the version tag free (a saved plan, or a
    plan from tag listings, looks again: crash recovery); rebase when the plan says
    so; build always last.
    """
    producers: list[Producer] = []
    if push and not action.checked_free:
        producers.append(Producer.ADOPT)
    if action.producer is Producer.REBASE and push and action.old_digest:
        producers.append(Producer.REBASE)
    producers.append(Producer.BUILD)
    return tuple(producers)
