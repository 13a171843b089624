"""The per-image apply protocol (DESIGN.md section 7).

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

from imagectl.builders import get_builder
from imagectl.builders.base import Builder, BuildRequest, SecretSpec
from imagectl.errors import BuildError, ImagectlError, RegistryError
from imagectl.labels import (
    LABEL_BASE_DIGEST,
    LABEL_CREATED,
    LABEL_INPUTS,
    LABEL_VERSION,
    base_annotations,
    build_labels,
)
from imagectl.lockfile import BaseRecord, ImageRecord, Lock, write_lock
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.model import Action
from imagectl.plan.tags import may_move_floating
from imagectl.platforms import read_labels
from imagectl.rebase.publish import Rebaser, RebaseRefused, RebaseRequest
from imagectl.registry import Reference, RegistryClient, parse_reference
from imagectl.registry.manifests import Manifest as RegistryManifest

Step = Callable[[str, str], None]  # (image, step name) -> None: progress and test hooks

# Test hook (tests/reliability): `IMAGECTL_FAULT_KILL_AT=<image>:<step>` makes the process
# SIGKILL itself when `image` reaches `step` ("start", "built", "pushed", "verified",
# "tagged:<tag>", "recorded", "adopted"; `*:commit` just before the git commit), to prove
# that a crash at any point of the protocol loses nothing. Never set it in production.
FAULT_KILL_ENV = "IMAGECTL_FAULT_KILL_AT"


def fault_point(image: str, step: str, env: Mapping[str, str] | None = None) -> None:
    """SIGKILL this process when `IMAGECTL_FAULT_KILL_AT` names `image:step` (a test hook)."""
    wanted = (os.environ if env is None else env).get(FAULT_KILL_ENV)
    if wanted and wanted == f"{image}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


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


class LockRecorder:
    """Holds the lock in memory and writes it atomically after each image."""

    def __init__(self, path: Path, lock: Lock | None) -> None:
        self.path = path
        self.lock = lock or Lock()
        self.changed = False
        self._mutex = threading.Lock()

    def record(self, name: str, record: ImageRecord, bases: Mapping[str, BaseRecord]) -> None:
        with self._mutex:
            lock = self.lock.with_image(name, record)
            for key, base in bases.items():
                lock = lock.with_base(key, base)
            write_lock(self.path, lock)
            self.lock = lock
            self.changed = True


class ImageRunner:
    """Applies the actions of one plan, one image per call to `run`."""

    def __init__(self, ctx: RunContext, actions: Mapping[str, Action], recorder: LockRecorder):
        self.ctx = ctx
        self.actions = actions
        self.recorder = recorder
        self.outcomes: dict[str, Outcome] = {name: Outcome(name) for name in actions}
        self._builders: dict[str, Builder] = {}
        self._builders_mutex = threading.Lock()
        self.builder_modes: dict[str, str] = {}
        self.rebaser = Rebaser(ctx.client)
        self.published: dict[str, RegistryManifest] = {}  # image -> manifest a rebase PUT

    def builder(self, name: str) -> Builder:
        with self._builders_mutex:
            if name not in self._builders:
                builder = get_builder(name)
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
            build_args={**dict(image.args), "BASE_IMAGE": base_pinned},
            labels=labels,
            annotations=base_annotations(action.base.ref, base_digest),
            target=image.target,
            platforms=image.platforms,
            network=image.network,
            secrets=tuple(
                SecretSpec(s.id, s.env, Path(s.file) if s.file else None) for s in image.secrets
            ),
            env=dict(self.ctx.env),
            timeout=image.timeout,
        )

    def labels(self, action: Action, ref: Reference) -> Mapping[str, str]:
        """The labels of the image `ref` names (for an index: the platform it means)."""
        image = self.ctx.manifest.images.get(action.image)
        return read_labels(self.ctx.client, ref, image.platforms if image else ())

    def existing(self, action: Action, base_digest: str) -> str | None:
        """The digest of an identical build already under the immutable tag (crash recovery).

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
        return info.digest

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
        image = self.ctx.manifest.images[name]
        base_pinned, base_digest = self.base_image(action)
        self.step(name, "start")
        digest = self.existing(action, base_digest) if self.ctx.push else None
        if digest is not None:
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
                ours = self.pushed_is_ours(action, digest, req)
            else:
                digest = again
            self.step(name, "pushed")
            outcome.state = "built" if ours else "adopted"
        outcome.digest = digest
        self.verify(action, digest)
        self.step(name, "verified")
        moved, held = self.move_floating(action, digest)
        outcome.tags_moved, outcome.tags_held = moved, held
        self.record(action, digest, base_digest, moved)
        self.step(name, "recorded")

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
            return again
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        self.ctx.client.put_manifest(ref, manifest)
        self.published[action.image] = manifest
        with req.log_path.open("a", encoding="utf-8") as log:
            log.write(f"imagectl: rebased {action.old_digest} onto {base_pinned}\n")
        return manifest.digest

    def pushed_is_ours(self, action: Action, digest: str, req: BuildRequest) -> bool:
        """Whether the builder pushed this run's build (True) or an identical one (False).

        A docker daemon keeps one local image per tag: another apply building the same
        version on the same daemon meanwhile re-tags it, and `docker push` sends that
        build instead. Same inputs, base and version: an identical build, adopted.

        Raises:
            RegistryError: the pushed image is a different build (other inputs or base).
        """
        ref = parse_reference(action.repository).with_digest(digest)
        labels = self.labels(action, ref)
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
        ref = parse_reference(action.repository).with_tag(action.immutable_tag)
        info = self.ctx.client.head_manifest(ref)
        if info is None or info.digest != digest:
            raise RegistryError(
                f"{action.image}: {ref} resolves to {info.digest if info else 'nothing'}, "
                f"not the pushed {digest}"
            )

    def move_floating(self, action: Action, digest: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        repo = parse_reference(action.repository)
        source = repo.with_digest(digest)
        moved: list[str] = []
        held: list[str] = list(action.held_tags)
        for tag in action.floating_tags:
            current = self.ctx.client.head_manifest(repo.with_tag(tag))
            if current is not None and current.digest != digest:
                holder = (  # the old build a rebase started from needs no label read
                    action.from_version
                    if action.old_digest and current.digest == action.old_digest
                    else self.labels(action, repo.with_tag(tag)).get(LABEL_VERSION)
                )
                if holder and not may_move_floating(action.to_version, holder):
                    held.append(tag)
                    continue
            known = self.published.get(action.image)
            if current is not None and current.digest == digest:
                pass
            elif known is not None and known.digest == digest:
                self.ctx.client.put_manifest(repo.with_tag(tag), known)  # in hand: no GET
            else:
                self.ctx.client.retag(source, tag)
            moved.append(tag)
            self.step(action.image, f"tagged:{tag}")
        return tuple(moved), tuple(held)

    def record(self, action: Action, digest: str, base_digest: str, moved: tuple[str, ...]) -> None:
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
            tags=[action.immutable_tag, *moved],
            base=base,
            inputs=action.inputs,
            built_at=self.ctx.now().astimezone(UTC).replace(microsecond=0),
            revision=self.ctx.revision,
            versions={},
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
