"""The per-image apply protocol (docs/design.md section 7).

1. build with the labels and `BASE_IMAGE` pinned by digest;
2. push the immutable tag — adopt an identical existing one, refuse a different one;
3. verify the registry's digest for the tag;
4. move floating tags forward only (manifest PUT, no blob upload);
5. record the image in the lock, written atomically.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from imagectl.apply.record import LockRecorder
from imagectl.builders import get_builder
from imagectl.builders.base import Builder, BuildRequest, SecretSpec
from imagectl.domain.tags import conflict_message, may_move_floating
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
from imagectl.rebase.publish import Rebaser, RebaseRefused, RebaseRequest
from imagectl.recovery import is_our_build, record_of, state_from_labels
from imagectl.registry import OciManifest, Reference, RegistryClient, parse_reference
from imagectl.supply.signing import without_signing_secrets
from imagectl.supply.step import KeyRing, check_base, provenance_facts, sign_and_attest

Step = Callable[[str, str], None]  # (image, step name) -> None: progress and test hooks

# Test hook (tests/reliability): `IMAGECTL_FAULT_KILL_AT=<image>:<step>` makes the process
# SIGKILL itself when `image` reaches `step` ("start", "built", "pushed", "verified",
# "signed", "tagged:<tag>", "recorded", "adopted"; `*:commit` just before the git commit), to prove
# that a crash at any point of the protocol loses nothing. Never set it in production.
FAULT_KILL_ENV = "IMAGECTL_FAULT_KILL_AT"


def fault_point(image: str, step: str, env: Mapping[str, str] | None = None) -> None:
    """SIGKILL this process when `IMAGECTL_FAULT_KILL_AT` names `image:step` (a test hook)."""
    wanted = (os.environ if env is None else env).get(FAULT_KILL_ENV)
    if wanted and wanted == f"{image}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


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
    state: str = "pending"  # built | adopted | failed | skipped | cancelled
    digest: str | None = None
    tags_moved: tuple[str, ...] = ()
    tags_held: tuple[str, ...] = ()
    error: str = ""
    method: str = "build"  # build | rebase
    log_path: Path | None = None
    started: float | None = None
    finished: float | None = None


@dataclass
class RunContext:
    """What every image of one apply run shares."""

    manifest: Manifest
    client: RegistryClient
    log_dir: Path
    revision: str | None
    source: str | None
    now: Callable[[], datetime]
    push: bool = True
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_step: Step | None = None


class ImageRunner:
    """Applies the actions of one plan, one image per call to `run`."""

    def __init__(
        self,
        ctx: RunContext,
        actions: Mapping[str, Action],
        recorder: LockRecorder,
        builders: Mapping[str, Builder] | None = None,
    ):
        """`builders` (name -> Builder) replaces `get_builder` for those names (a test seam);
        a name it lacks is still made by `get_builder`. Each builder is `check`ed once."""
        self.ctx = ctx
        self.actions = actions
        self.recorder = recorder
        self.outcomes: dict[str, Outcome] = {name: Outcome(name) for name in actions}
        self._given: Mapping[str, Builder] = builders or {}
        self._builders: dict[str, Builder] = {}
        self._builders_mutex = threading.Lock()
        self.builder_modes: dict[str, str] = {}
        self.keys = KeyRing(ctx.env)  # signing keys, decrypted once per run
        self.rebaser = Rebaser(ctx.client)
        self.published: dict[str, OciManifest] = {}  # image -> manifest a rebase PUT

    def builder(self, name: str) -> Builder:
        with self._builders_mutex:
            if name not in self._builders:
                builder = self._given.get(name) or get_builder(name)
                self.builder_modes[name] = builder.check()
                self._builders[name] = builder
            return self._builders[name]

    def step(self, image: str, name: str) -> None:
        fault_point(image, name, self.ctx.env)
        if self.ctx.on_step is not None:
            self.ctx.on_step(image, name)

    def base_image(self, action: Action) -> tuple[str, str]:
        """(BASE_IMAGE pinned by digest, base digest) for the build."""
        base = action.base
        digest = base.digest
        if base.internal and base.name in self.outcomes and action.base.digest is None:
            digest = self.outcomes[base.name].digest
        if digest is None:
            raise ImagectlError(f"{action.image}: the digest of base {base.name} is unknown")
        repo = base.ref.rsplit(":", 1)[0] if ":" in base.ref.rsplit("/", 1)[-1] else base.ref
        if not self.ctx.push and base.internal and base.name in self.outcomes:
            return base.ref, digest  # --no-push: the parent exists only in the local store
        return f"{repo}@{digest}", digest

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

        That is crash recovery (an earlier run died after its push), or a retag.

        Raises:
            RegistryError: the tag exists and holds a different build.
        """
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        info = self.ctx.client.head_manifest(ref)
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
        outcome = self.outcomes[name]
        outcome.log_path = self.ctx.log_dir / f"{name}.log"
        try:
            self._run(name, outcome)
        except ImagectlError as exc:
            outcome.state = "failed"
            outcome.error = str(exc)
            raise
        except Exception as exc:  # an unexpected bug must fail this image, not the run
            outcome.state = "failed"
            outcome.error = f"internal error: {exc!r}"
            raise

    def _run(self, name: str, outcome: Outcome) -> None:
        action = self.actions[name]
        if action.blocked:
            raise PlanError(action.blocked)  # reported by plan; nothing is built or pushed
        image = self.ctx.manifest.images[name]
        base_pinned, base_digest = self.base_image(action)
        self.step(name, "start")
        check_base(self.ctx.client, self.ctx.manifest, action, base_digest)  # `verify:` key
        # A version tag the plan just found free needs no second look before the build.
        check_first = self.ctx.push and not action.checked_free
        found = self.existing(action, base_digest) if check_first else None
        labels: Mapping[str, str] = found[1] if found else {}
        if found is not None:
            digest = found[0]
            outcome.state = "adopted"
            self.step(name, "adopted")
        elif (rebased := self.try_rebase(action, image, base_pinned, base_digest)) is not None:
            digest, outcome.state, outcome.method = rebased, "built", "rebase"
            self.step(name, "pushed")
        else:
            builder = self.builder(image.builder)
            req = self.request(action, image, base_pinned, base_digest)
            req.log_path.parent.mkdir(parents=True, exist_ok=True)
            builder.build(req)
            self.step(name, "built")
            if not self.ctx.push:
                outcome.state = "built"
                return
            again = self.existing(action, base_digest)  # someone may have pushed meanwhile
            ours = False
            if again is None:
                digest = builder.push(req)
                self.step(name, "pushed")
                ours = self.pushed_is_ours(action, digest, req)
            else:
                digest, labels = again
                self.step(name, "pushed")
            outcome.state = "built" if ours else "adopted"
        outcome.digest = digest
        self.step(name, "verified")
        # an adopted build keeps the git-ops commit it was built from (its label)
        revision = labels.get(LABEL_REVISION) or self.ctx.revision
        self.sign(action, image, digest, base_digest, revision)
        moved, held, conflicts, retagged = self.move_floating(action, digest)
        outcome.tags_moved, outcome.tags_held = moved, held
        if retagged:
            self.verify(action, digest)  # the tags moved to what the immutable tag names
        self.record(action, digest, base_digest, moved, conflicts, labels)
        self.step(name, "recorded")
        if conflicts:
            repository = action.repository
            raise RegistryError(
                "; ".join(
                    conflict_message(c.tag, c.template, repository, c.version, c.digest)
                    for c in conflicts
                )
            )

    def try_rebase(
        self, action: Action, image: ImageConfig, base_pinned: str, base_digest: str
    ) -> str | None:
        """Rebase when the plan says so: the pushed digest, or None to build instead.

        The old image is checked first (its first layers must be exactly the old base's);
        when it does not pass, the log says why and the image is built.
        """
        if action.method != "rebase" or not self.ctx.push or not action.old_digest:
            return None
        req = self.request(action, image, base_pinned, base_digest)
        req.log_path.parent.mkdir(parents=True, exist_ok=True)
        base_repo = parse_reference(base_pinned)
        rebase = RebaseRequest(
            repository=parse_reference(action.repository),
            old_digest=action.old_digest,
            old_base=base_repo.with_digest(action.old_base_digest or ""),
            new_base=base_repo.with_digest(base_digest),
            labels=req.labels,
            annotations=req.annotations,
            created=req.labels[LABEL_CREATED],
        )
        try:
            manifest = self.rebaser.rebase(rebase)
        except RebaseRefused as exc:
            with req.log_path.open("a", encoding="utf-8") as log:
                log.write(f"imagectl: not rebased, building instead: {exc}\n")
            return None
        again = self.existing(action, base_digest)  # someone may have pushed meanwhile
        if again is not None:
            return again[0]
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        self.ctx.client.put_manifest(ref, manifest)
        self.published[action.image] = manifest
        with req.log_path.open("a", encoding="utf-8") as log:
            log.write(f"imagectl: rebased {action.old_digest} onto {base_pinned}\n")
        return manifest.digest

    def pushed_is_ours(self, action: Action, digest: str, req: BuildRequest) -> bool:
        """Re-read the immutable tag after the push: ours (True) or an identical build (False).

        One read by tag answers both questions: does the tag name what the builder
        pushed (else another apply pushed the same version meanwhile: a lost race),
        and is that the build of this run? A docker daemon keeps one local image per
        tag: another apply building the same version on the same daemon meanwhile
        re-tags it, and `docker push` sends that build instead. Same inputs, base and
        version: an identical build, adopted.

        Raises:
            RegistryError: a lost race, or the pushed image is a different build.
        """
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        image = self.ctx.manifest.images.get(action.image)
        config = read_config(self.ctx.client, ref, image.platforms if image else ())
        holder = config.index_digest or config.manifest_digest
        if holder != digest:
            self.lost_race(action, ref, digest, holder, config.labels)
        labels = config.labels
        for key in (LABEL_INPUTS, LABEL_BASE_DIGEST, LABEL_VERSION):
            if labels.get(key) != req.labels.get(key):
                raise RegistryError(
                    f"{action.image}: the image pushed as {action.repository}:"
                    f"{action.immutable_tag} ({digest}) is not the one this run built: its "
                    f"{key} is {labels.get(key)!r}, not {req.labels.get(key)!r} (another build "
                    "of that tag on the same builder replaced the local image meanwhile); "
                    "re-run `imagectl plan --refresh`"
                )
        return labels.get(LABEL_CREATED) == req.labels.get(LABEL_CREATED)

    def verify(self, action: Action, digest: str) -> None:
        """Re-read the immutable tag: it must name `digest`, else this run lost a race.

        Raises:
            RegistryError: "lost a race"; the lock then records the registry's build.
        """
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        info = self.ctx.client.head_manifest(ref)
        if info is None or info.digest != digest:
            holder = info.digest if info else None
            labels = self.labels(action, ref) if info else {}
            self.lost_race(action, ref, digest, holder, labels)

    def sign(
        self,
        action: Action,
        image: ImageConfig,
        digest: str,
        base_digest: str,
        revision: str | None,
    ) -> None:
        """Sign and attest the verified digest (`sign:`); failure fails the image."""
        if image.sign is None:
            return
        facts = provenance_facts(
            self.ctx.manifest,
            image,
            action,
            digest,
            base_digest,
            revision,
            self.ctx.source,
        )
        sign_and_attest(self.ctx.client, self.keys, facts, image)
        self.step(action.image, "signed")

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

    def move_floating(
        self, action: Action, digest: str
    ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Conflict, ...], bool]:
        """Move the floating tags forward only; never one that names an immutable tag.

        A holder's version comes from the lock's history when its digest is there,
        else from its labels; the manifest is fetched once for all the tag PUTs.

        Returns:
            (tags now on `digest`, tags held by a newer version, tags that are immutable
            tags of other builds per their holders' version labels, whether a tag moved).
        """
        repo = parse_reference(action.repository)
        known = self.recorder.image(action.image)
        version_of = {d: v for v, d in (known.versions if known else {}).items()}
        moved: list[str] = []
        held: list[str] = list(action.held_tags)
        conflicts: list[Conflict] = []
        manifest: OciManifest | None = None
        for tag in action.floating_tags:
            current = self.ctx.client.head_manifest(repo.with_tag(tag))
            if current is not None and current.digest == digest:
                moved.append(tag)
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
            published = self.published.get(action.image)
            if published is not None and published.digest == digest:
                manifest = published  # a rebase PUT it: in hand, no GET
            manifest = manifest or self.ctx.client.get_manifest(repo.with_digest(digest))
            self.ctx.client.put_manifest(repo.with_tag(tag), manifest)
            moved.append(tag)
            self.step(action.image, f"tagged:{tag}")
        return tuple(moved), tuple(held), tuple(conflicts), manifest is not None

    def record(
        self,
        action: Action,
        digest: str,
        base_digest: str,
        moved: tuple[str, ...],
        conflicts: tuple[Conflict, ...] = (),
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Record the image; a retag keeps the build's own record (or its labels' facts)."""
        known = {c.version: c.digest for c in conflicts}  # other builds of the repository
        tags = [action.immutable_tag, *moved]
        if action.retag_only:
            previous = self.recorder.image(action.image)
            if previous is None or previous.digest != digest:
                image = self.ctx.manifest.images[action.image]
                previous = record_of(
                    state_from_labels(image, action.to_version, digest, labels or {})
                )
            versions = {**previous.versions, **known}
            record = previous.model_copy(update={"tags": tags, "versions": versions})
            self.recorder.record(action.image, record, {})
            return
        bases: dict[str, BaseRecord] = {}
        base = BaseRecord(
            ref=action.base.ref, digest=base_digest, platforms=dict(action.base.platforms)
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
            revision=(labels or {}).get(LABEL_REVISION) or self.ctx.revision,
            versions=known,
            frontend=action.frontend,
        )
        self.recorder.record(action.image, record, bases)


__all__ = [
    "FAULT_KILL_ENV",
    "BuildError",
    "ImageRunner",
    "LockRecorder",
    "Outcome",
    "RunContext",
    "fault_point",
]
