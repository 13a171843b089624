"""The per-image apply protocol (docs/design.md section 7).

Each image is produced by the first producer of its chain that takes it
(`apply/producers.py`: adopt an identical push, rebase, build), then passes the typed
steps of `apply/pipeline.py` in order: verify, sign, tag, record. `ImageRunner` holds
what the producers and steps share: the builders, the registry checks, the record.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

from imagectl.apply.fanout import Fanned, fan_out
from imagectl.apply.lookahead import VersionTagLookahead
from imagectl.apply.pipeline import STEPS, PipelineStep
from imagectl.apply.producers import PRODUCERS, ProducerStep, chain
from imagectl.apply.record import LockRecorder
from imagectl.apply.steps import (
    FAULT_KILL_ENV,
    OutcomeState,
    StepEvent,
    StepHook,
    StepName,
    fault_point,
)
from imagectl.builders import get_builder
from imagectl.builders.base import Builder, BuildRequest, SecretSpec
from imagectl.domain.producers import Producer
from imagectl.domain.tags import may_move_floating
from imagectl.errors import BuildError, ImagectlError, PlanError, RegistryError
from imagectl.frontend import frontend_build_args
from imagectl.labels import (
    LABEL_BASE_DIGEST,
    LABEL_CREATED,
    LABEL_INPUTS,
    LABEL_REVISION,
    LABEL_VERSION,
    base_annotations,
    build_labels,
)
from imagectl.lockfile import BaseRecord, ImageRecord
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import Action
from imagectl.platforms import read_config, read_labels
from imagectl.rebase.publish import Rebaser
from imagectl.rebase.sources import Doc, PublishedDocs
from imagectl.recovery import is_our_build, record_of, state_from_labels
from imagectl.registry import (
    ManifestInfo,
    OciManifest,
    Reference,
    RegistryClient,
    parse_reference,
)
from imagectl.registry.manifests import config_digest_of
from imagectl.supply.signing import without_signing_secrets
from imagectl.supply.step import KeyRing, check_base

Step = StepHook  # the name engine.py and older callers use


_T = TypeVar("_T")


@dataclass(frozen=True)
class Conflict:
    """A floating tag whose current holder is the build of that very version."""

    tag: str
    template: str
    version: str
    digest: str


@dataclass
class Outcome:
    """What happened to one image during apply."""

    image: str
    state: OutcomeState = OutcomeState.PENDING
    digest: str | None = None
    tags_moved: tuple[str, ...] = ()
    tags_held: tuple[str, ...] = ()
    error: str = ""
    method: Producer = Producer.BUILD  # the producer that took the image
    log_path: Path | None = None
    started: float | None = None
    finished: float | None = None


@dataclass
class RunContext:
    """What every image of one apply run shares.

    `guard_races` (`apply --guard-races`): read the registry around each push against
    an apply of the same images that runs at the same time without a git claim (a HEAD
    before the push, a HEAD per floating tag, the re-read after the tag moves). Off,
    the plan's view is trusted: under --git-push the claim is the compare-and-swap
    the registry lacks, and verify's read after the push is there in every mode; see
    docs/versions-and-tags.md "Requests per build".
    """

    manifest: Manifest
    client: RegistryClient
    log_dir: Path
    revision: str | None
    source: str | None
    now: Callable[[], datetime]
    push: bool = True
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_step: StepHook | None = None
    guard_races: bool = False


@dataclass
class Job:
    """One image on its way through the runner: what its producer and steps share."""

    action: Action
    image: ImageConfig
    outcome: Outcome
    base_pinned: str  # BASE_IMAGE, pinned by digest
    base_digest: str
    digest: str = ""  # under the immutable tag, once produced
    labels: Mapping[str, str] = field(default_factory=dict)  # an adopted build's labels
    manifest: OciManifest | None = None  # the bytes under the immutable tag, when in hand
    request: BuildRequest | None = None  # a build's request (verify compares its labels)
    image_id: str | None = None  # the config digest the builder reports for its build
    pushed_by_builder: bool = False  # verify re-reads the tag by GET
    moved: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    holders: list[ManifestInfo | None] | None = None  # the floating tags', read with verify's GET

    @property
    def name(self) -> str:
        return self.action.image

    @property
    def ref(self) -> Reference:
        """The immutable tag."""
        return parse_reference(self.action.repository).with_tag(self.action.immutable_tag)


class ImageRunner:
    """Applies the actions of one plan, one image per call to `run`."""

    def __init__(
        self,
        ctx: RunContext,
        actions: Mapping[str, Action],
        recorder: LockRecorder,
        builders: Mapping[str, Builder] | None = None,
        *,
        producers: Mapping[Producer, ProducerStep] = PRODUCERS,
        steps: tuple[PipelineStep, ...] = STEPS,
    ):
        """`builders` (name -> Builder) replaces `get_builder` for those names (a test seam);
        a name it lacks is still made by `get_builder`. Each builder is `check`ed once."""
        self.ctx = ctx
        self.actions = actions
        self.recorder = recorder
        self.producers = producers
        self.steps = steps
        self.outcomes: dict[str, Outcome] = {name: Outcome(name) for name in actions}
        self._given: Mapping[str, Builder] = builders or {}
        self._builders: dict[str, Builder] = {}
        self._builders_mutex = threading.Lock()
        self.builder_modes: dict[str, str] = {}
        self.keys = KeyRing(ctx.env)  # signing keys, decrypted once per run
        self.rebaser = Rebaser(ctx.client)
        self.published = PublishedDocs.of(ctx.manifest.root_dir)  # for the next rebase
        adopting = {
            name: parse_reference(a.repository).with_tag(a.immutable_tag)
            for name, a in actions.items()
            if not a.blocked and chain(a, push=ctx.push)[0] is Producer.ADOPT
        }
        self.lookahead = VersionTagLookahead(ctx.client, adopting)

    def close(self) -> None:
        """End the run's background work (the version-tag looks nobody took)."""
        self.lookahead.close()

    @property
    def guarded(self) -> bool:
        """Whether to guard against a concurrent unclaimed run with registry reads."""
        return self.ctx.guard_races

    def builder(self, name: str) -> Builder:
        with self._builders_mutex:
            if name not in self._builders:
                builder = self._given.get(name) or get_builder(name)
                self.builder_modes[name] = builder.check()
                self._builders[name] = builder
            return self._builders[name]

    def emit(self, image: str, event: StepEvent) -> None:
        """Tell the hooks; a finished step is also a fault point."""
        if not event.begun:
            fault_point(image, event.key, self.ctx.env)
        if self.ctx.on_step is not None:
            self.ctx.on_step(image, event)

    def base_image(self, action: Action) -> tuple[str, str]:
        """(BASE_IMAGE pinned by digest, base digest) for the build."""
        base = action.base
        digest = base.digest
        if base.internal and base.name in self.outcomes and action.base.digest is None:
            digest = self.outcomes[base.name].digest
        if digest is None:
            raise ImagectlError(f"{action.image}: the digest of base {base.name} is unknown")
        if not self.ctx.push and base.internal and base.name in self.outcomes:
            return base.ref, digest  # --no-push: the parent exists only in the local store
        return f"{parse_reference(base.ref).name}@{digest}", digest

    def request(
        self, action: Action, image: ImageConfig, base_pinned: str, base_digest: str
    ) -> BuildRequest:
        labels = build_labels(
            user_labels=dict(image.labels),
            name=action.image,
            family=action.family,
            version=action.to_version,
            base_name=action.base.ref,
            base_digest=base_digest,
            created=self.ctx.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            revision=self.ctx.revision,
            source=self.ctx.source,
            inputs=action.inputs,
        )
        return BuildRequest(
            name=action.image,
            context=image.context,
            dockerfile=image.dockerfile,
            ref=f"{action.repository}:{action.immutable_tag}",
            log_path=self.ctx.log_dir / f"{action.image}.log",
            build_args={
                **dict(image.args),
                "BASE_IMAGE": base_pinned,
                **frontend_build_args(action.frontend),
            },
            labels=labels,
            annotations=base_annotations(action.base.ref, base_digest),
            target=image.target,
            platforms=image.platforms,
            network=image.network,
            secrets=tuple(
                SecretSpec(s.id, s.env, Path(s.file) if s.file else None) for s in image.secrets
            ),
            env=without_signing_secrets(self.ctx.env, image.sign),  # the key stays here
            timeout=image.timeout,
        )

    def labels(self, action: Action, ref: Reference) -> Mapping[str, str]:
        """The labels of the image `ref` names (for an index: the platform it means)."""
        image = self.ctx.manifest.images.get(action.image)
        return read_labels(self.ctx.client, ref, image.platforms if image else ())

    def existing(self, action: Action, base_digest: str) -> tuple[str, Mapping[str, str]] | None:
        """The digest and labels of an identical build already under the immutable tag.

        That is crash recovery (an earlier run died after its push), or a retag. The
        first look at an image (the adopt producer's) was sent when the run started
        (`apply/lookahead.py`); any later one (the check before a push) asks now.

        Raises:
            RegistryError: the tag exists and holds a different build.
        """
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        ahead = self.lookahead.take(action.image)  # the adopt producer's look, sent ahead
        info = ahead.result() if ahead is not None else self.ctx.client.head_manifest(ref)
        if info is None:
            return None
        labels = self.labels(action, ref)
        same = (
            labels.get(LABEL_INPUTS) == action.inputs
            and labels.get(LABEL_BASE_DIGEST) == base_digest
            and labels.get(LABEL_VERSION) == action.to_version
        )
        if not same:
            raise RegistryError(
                f"{action.image}: {ref} already exists with a different build "
                f"(inputs or base differ); an immutable tag is never overwritten — "
                "someone else pushed this version; re-run `imagectl plan --refresh`"
            )
        return info.digest, labels

    def run(self, name: str) -> None:
        """The whole protocol of one image, in this thread."""
        finish = self.start(name)
        if finish is not None:
            finish()

    def start(self, name: str) -> Callable[[], None] | None:
        """Produce the image (build and push, rebase, adopt); then what is left to do.

        The returned step chain (verify, sign, tag, record) needs no builder: the
        scheduler runs it off the build slot, so the next build starts meanwhile.
        None: nothing is left (--no-push). A failure fails the image either way.
        """
        outcome = self.outcomes[name]
        outcome.log_path = self.ctx.log_dir / f"{name}.log"
        job = self._failing(outcome, partial(self._produce, name, outcome))
        if not self.ctx.push:
            return None  # --no-push: built into the local store only
        return partial(self._failing, outcome, partial(self._finish, job))

    def _failing(self, outcome: Outcome, work: Callable[[], _T]) -> _T:
        """`work()`; an error fails the image (and is raised on)."""
        try:
            return work()
        except ImagectlError as exc:
            self.failed(outcome, str(exc))
            raise
        except Exception as exc:  # an unexpected bug must fail this image, not the run
            self.failed(outcome, f"internal error: {exc!r}")
            raise

    def failed(self, outcome: Outcome, error: str) -> None:
        outcome.state, outcome.error = OutcomeState.FAILED, error
        if self.ctx.on_step is not None:
            self.ctx.on_step(outcome.image, OutcomeState.FAILED)

    def _produce(self, name: str, outcome: Outcome) -> Job:
        action = self.actions[name]
        if action.blocked:
            raise PlanError(action.blocked)  # reported by plan; nothing is built or pushed
        image = self.ctx.manifest.images[name]
        base_pinned, base_digest = self.base_image(action)
        job = Job(action, image, outcome, base_pinned, base_digest)
        self.emit(name, StepEvent(StepName.START))
        check_base(self.ctx.client, self.ctx.manifest, action, base_digest)  # `verify:` key
        self.produce(job)
        return job

    def _finish(self, job: Job) -> None:
        for step in self.steps:
            if step.applies(self, job):
                self.emit(job.name, StepEvent(step.name, begun=True))
                step.run(self, job)

    def produce(self, job: Job) -> None:
        """Run the producers of the action's chain until one takes the image."""
        for producer in chain(job.action, push=self.ctx.push):
            self.emit(job.name, StepEvent.producing(producer))
            if self.producers[producer].produce(self, job):
                job.outcome.method = producer
                return
        raise ImagectlError(f"{job.name}: no producer took the image")  # BUILD always does

    def verify_push(self, job: Job) -> None:
        """One GET of the immutable tag after the builder's push.

        Its digest must be the one the builder pushed, else another apply pushed the
        same version meanwhile (a lost race). Its config digest tells whether that is
        this run's build: a docker daemon keeps one local image per tag, and another
        apply building the same version on the same daemon meanwhile re-tags it, so
        `docker push` sends that build. When the builder cannot say which config it
        built (or for an index), the config's labels decide, as before: same inputs,
        base and version is an identical build, adopted. The bytes then serve every
        floating-tag PUT.

        Raises:
            RegistryError: a lost race, or the pushed image is a different build.
        """
        action, ref, client = job.action, job.ref, self.ctx.client
        manifest = self.read_pushed(job)
        if manifest.digest != job.digest:
            self.lost_race(action, ref, job.digest, manifest.digest, self.labels(action, ref))
        job.manifest = manifest
        if job.image.update != "build":  # the bytes its next rebase reads (a build the
            # checks below refuse is not recorded: nothing asks for its digest)
            self.published.save(job.name, {manifest.digest: Doc(manifest.media_type, manifest.raw)})
        ours = not manifest.is_index and config_digest_of(manifest, str(ref)) == job.image_id
        if job.image_id and ours:
            return  # this run's build: the config digest the builder reported
        req = job.request
        assert req is not None  # a builder's push always has its request
        config = read_config(client, ref, job.image.platforms)
        for key in (LABEL_INPUTS, LABEL_BASE_DIGEST, LABEL_VERSION):
            if config.labels.get(key) != req.labels.get(key):
                raise RegistryError(
                    f"{action.image}: the image pushed as {action.repository}:"
                    f"{action.immutable_tag} ({job.digest}) is not the one this run built: its "
                    f"{key} is {config.labels.get(key)!r}, not {req.labels.get(key)!r} (another "
                    "build of that tag on the same builder replaced the local image meanwhile); "
                    "re-run `imagectl plan --refresh`"
                )
        if config.labels.get(LABEL_CREATED) != req.labels.get(LABEL_CREATED):
            job.outcome.state = OutcomeState.ADOPTED  # an identical build, not ours

    def read_pushed(self, job: Job) -> OciManifest:
        """Verify's GET of the immutable tag; guarded, with the floating tags' holders.

        Guarded, the tag step reads each floating tag's holder. When no step runs
        between verify and tag (no `sign:`), those HEADs go with this GET, at once: the
        holders are read one round trip earlier, and the image waits on one less.
        """
        get = partial(self.ctx.client.get_manifest, job.ref)
        if not self.guarded or job.image.sign is not None:
            return get()
        heads = self.holder_heads(job.action)
        calls: list[Callable[[], OciManifest | ManifestInfo | None]] = [get, *heads]
        manifest, *holders = fan_out(calls)
        assert isinstance(manifest, OciManifest)
        job.holders = [h for h in holders if not isinstance(h, OciManifest)]
        return manifest

    def holder_heads(self, action: Action) -> list[Callable[[], ManifestInfo | None]]:
        """A HEAD of each floating tag of `action`, to send."""
        repo, head = parse_reference(action.repository), self.ctx.client.head_manifest
        return [partial(head, repo.with_tag(tag)) for tag in action.floating_tags]

    def reread(self, job: Job) -> None:
        """Re-read the immutable tag: it must name the job's digest, else a lost race.

        Raises:
            RegistryError: "lost a race"; the lock then records the registry's build.
        """
        action, ref = job.action, job.ref
        info = self.ctx.client.head_manifest(ref)
        if info is None or info.digest != job.digest:
            holder = info.digest if info else None
            labels = self.labels(action, ref) if info else {}
            self.lost_race(action, ref, job.digest, holder, labels)

    def lost_race(
        self,
        action: Action,
        ref: Reference,
        digest: str,
        holder: str | None,
        labels: Mapping[str, str],
    ) -> NoReturn:
        """Fail the image: the immutable tag names another build; record that build if ours.

        Raises:
            RegistryError: always.
        """
        if holder is not None and is_our_build(labels, action.to_version):
            image = self.ctx.manifest.images[action.image]
            state = state_from_labels(image, action.to_version, holder, labels)
            self.recorder.record(action.image, record_of(state), {})
        raise RegistryError(
            f"{action.image}: lost a race: {ref} names {holder or 'nothing'} now, not the "
            f"{digest} this run pushed (another apply pushed the same version meanwhile); an "
            "immutable tag is never repointed, so this build is not recorded: the lock records "
            "what the registry holds, and the next `imagectl apply` plans from there"
        )

    def move_floating(self, job: Job) -> bool:
        """Move the floating tags forward only; never one that names an immutable tag.

        Guarded (--guard-races) or for a retag, each tag's holder is looked up first (the
        HEADs sent at once): its version comes from the lock's history when its digest
        is there, else from its labels. Otherwise the plan's view holds (held tags
        and conflicts come from the lock's history). The manifest bytes come from the
        job when in hand, else one GET serves every PUT; the PUTs are sent at once.
        Sets the job's moved, held and conflicting tags.

        Returns:
            Whether a tag was PUT.
        """
        action, digest = job.action, job.digest
        repo = parse_reference(action.repository)
        known = self.recorder.image(action.image)
        version_of = {d: v for v, d in (known.versions if known else {}).items()}
        already: set[str] = set()
        held: list[str] = list(action.held_tags)
        conflicts: list[Conflict] = []
        look = self.guarded or action.retag_only
        client = self.ctx.client
        heads = self.holder_heads(action)
        if not look:
            holders: list[ManifestInfo | None] = [None] * len(heads)
        else:  # read with verify's GET, or now, all at once: one round trip
            holders = job.holders if job.holders is not None else fan_out(heads)
        for tag, current in zip(action.floating_tags, holders, strict=True):
            if current is not None and current.digest == digest:
                already.add(tag)
                continue
            if current is not None:
                holder = (  # the old build a rebase started from needs no label read
                    action.from_version
                    if action.old_digest and current.digest == action.old_digest
                    else version_of.get(current.digest)
                    or self.labels(action, repo.with_tag(tag)).get(LABEL_VERSION)
                )
                if holder == tag:
                    conflicts.append(Conflict(tag, action.template_of(tag), holder, current.digest))
                    continue
                if holder and not may_move_floating(action.to_version, holder):
                    held.append(tag)
                    continue
        skipped = already | set(held) | {c.tag for c in conflicts}
        to_put = [t for t in action.floating_tags if t not in skipped]
        if to_put:
            manifest = job.manifest or client.get_manifest(repo.with_digest(digest))
            job.manifest = manifest
            # every PUT at once (one round trip); each tag's step, in tag order, as soon as
            # its PUT is in: a kill there leaves the later tags moved or not, either way
            # the re-run converges (tests/reliability/test_kills.py, `app:tagged:1.0`)
            puts = Fanned(
                [partial(client.put_manifest, repo.with_tag(t), manifest) for t in to_put]
            )
            for tag, _ in zip(to_put, puts.results(), strict=True):
                self.emit(action.image, StepEvent(StepName.TAGGED, tag))
        job.moved = tuple(t for t in action.floating_tags if t in already or t in to_put)
        job.held, job.conflicts = tuple(held), tuple(conflicts)
        return bool(to_put)

    def record(self, job: Job) -> None:
        """Record the image; a retag keeps the build's own record (or its labels' facts)."""
        action, digest, labels = job.action, job.digest, job.labels
        known = {c.version: c.digest for c in job.conflicts}  # other builds of the repository
        tags = [action.immutable_tag, *job.moved]
        if action.retag_only:
            previous = self.recorder.image(action.image)
            if previous is None or previous.digest != digest:
                previous = record_of(
                    state_from_labels(job.image, action.to_version, digest, labels)
                )
            versions = {**previous.versions, **known}
            record = previous.model_copy(update={"tags": tags, "versions": versions})
            self.recorder.record(action.image, record, {})
            return
        bases: dict[str, BaseRecord] = {}
        base = BaseRecord(
            ref=action.base.ref, digest=job.base_digest, platforms=dict(action.base.platforms)
        )
        if not action.base.internal:
            bases[action.base.name] = base
        record = ImageRecord(
            repository=action.repository,
            version=action.to_version,
            digest=digest,
            tags=tags,
            base=base,
            inputs=action.inputs,
            built_at=self.ctx.now().astimezone(UTC).replace(microsecond=0),
            revision=labels.get(LABEL_REVISION) or self.ctx.revision,
            versions=known,
            frontend=action.frontend,
        )
        self.recorder.record(action.image, record, bases)


__all__ = [
    "FAULT_KILL_ENV",
    "BuildError",
    "ImageRunner",
    "Job",
    "LockRecorder",
    "Outcome",
    "OutcomeState",
    "RunContext",
    "StepEvent",
    "StepName",
    "fault_point",
]
