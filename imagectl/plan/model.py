"""Plan data: what was built (BuiltState), what was observed, and the plan itself.

Pure data with JSON round trips; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

from imagectl.domain.producers import Producer
from imagectl.domain.reference import written_tag


class StaleReason(StrEnum):
    """Why an image is in the plan (docs/design.md section 4), in reporting order."""

    NEW = "new"
    VERSION_CHANGED = "version-changed"
    INPUTS_CHANGED = "inputs-changed"
    BASE_UPDATED = "base-updated"
    BASE_REBUILT = "base-rebuilt"
    SCHEDULE_DUE = "schedule-due"
    MISSING = "missing"
    TAG_MISSING = "tag-missing"
    TAG_MOVED = "tag-moved"
    FORCED = "forced"


# Reasons that only put floating tags back on the current build: nothing is rebuilt.
RETAG_REASONS = frozenset({StaleReason.TAG_MISSING, StaleReason.TAG_MOVED})


@dataclass(frozen=True)
class BuiltState:
    """What the last build of an image was (from the lock, or recovered from labels)."""

    version: str
    digest: str
    base_ref: str
    base_digest: str
    inputs: str
    built_at: datetime
    tags: tuple[str, ...] = ()
    repository: str = ""  # where it was pushed ("" when unknown)
    revision: str = ""  # git-ops commit it was built at ("" when unknown)
    # every version tag this repository ever had -> its digest ("" when unknown)
    history: dict[str, str] = field(default_factory=dict)
    base_platforms: Mapping[str, str] = field(default_factory=dict)  # platform -> base digest


@dataclass(frozen=True)
class Observed:
    """Every fact planning needs from the world, gathered by `imagectl.observe`."""

    base_digests: dict[str, str]  # external base key -> current digest
    built: dict[str, BuiltState]  # image -> last build
    inputs: dict[str, str]  # image -> current inputs digest
    missing: frozenset[str] = frozenset()  # images whose immutable tag is gone (--refresh)
    # image -> tag-missing / tag-moved: a floating tag of its current build was deleted or
    # moved by hand (--refresh)
    tag_drift: dict[str, tuple[StaleReason, ...]] = field(default_factory=dict)
    # image -> why its next version tag cannot be used (held by something not ours)
    taken: dict[str, str] = field(default_factory=dict)
    listed: bool = False  # every image's tags were listed (--refresh): history is complete
    revision: str | None = None  # git-ops commit, for {sha}
    frontends: dict[str, str] = field(default_factory=dict)  # image -> pinned `# syntax=`
    # external base key -> platform -> that platform's image digest (bases of images that
    # declare platforms only)
    base_platforms: dict[str, dict[str, str]] = field(default_factory=dict)
    # image -> why its Dockerfile cannot be rebased ("" when it can), for images whose
    # `update:` is rebase or auto
    rebase_problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked for on the command line."""

    force: frozenset[str] = frozenset()
    only: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BaseUse:
    """The base an action builds from: reference by tag and digest (None: built in this plan)."""

    name: str  # image name or external base key
    ref: str
    digest: str | None
    internal: bool
    platforms: Mapping[str, str] = field(default_factory=dict)  # platform -> image digest
    # the tag of `ref` ("" unknown), for {base_tag}: known where the ref is made, not re-parsed
    tag: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ref": self.ref, "digest": self.digest}
        if self.platforms:
            data["platforms"] = dict(self.platforms)
        return data


@dataclass(frozen=True)
class Action:
    """One image to rebuild."""

    image: str
    family: str
    repository: str
    reasons: tuple[StaleReason, ...]
    from_version: str | None
    to_version: str
    tags: tuple[str, ...]  # immutable first, then floating tags that may move
    held_tags: tuple[str, ...]  # floating tags a newer version holds: left alone
    depends_on: tuple[str, ...]
    base: BaseUse
    inputs: str
    depth: int
    frontend: str | None = None  # the `# syntax=` frontend pinned by digest, if any
    blocked: str = ""  # why this image cannot be built as planned (it fails at apply)
    templates: tuple[str, ...] = ()  # the template each tag of `tags` was rendered from
    # the plan found `to_version`'s tag free just now (never saved: a saved plan re-checks)
    checked_free: bool = False

    @property
    def producer(self) -> Producer:
        """How the image is produced: `build` or `rebase` (`adopt` is decided at apply)."""
        return Producer(self.method)

    @property
    def retag_only(self) -> bool:
        """True when the action only puts floating tags back on the current build."""
        return self.from_version == self.to_version

    def template_of(self, tag: str) -> str:
        """The template `tag` was rendered from ("" when unknown)."""
        pairs = dict(zip(self.tags, self.templates, strict=False))
        return pairs.get(tag, "")

    details: tuple[str, ...] = ()  # what each reason means here, e.g. which platform moved
    method: str = "build"  # "build", or "rebase": the old image's own layers on the new base
    why: str = ""  # why this method
    old_digest: str | None = None  # rebase: the old build (image or index)
    old_base_digest: str | None = None  # rebase: the base the old build was made on

    @property
    def immutable_tag(self) -> str:
        return self.tags[0]

    @property
    def floating_tags(self) -> tuple[str, ...]:
        return self.tags[1:]

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of docs/design.md section 8 (`blocked` only when set)."""
        data: dict[str, Any] = {
            "image": self.image,
            "family": self.family,
            "repository": self.repository,
            "reasons": [str(r) for r in self.reasons],
            "from_version": self.from_version,
            "to_version": self.to_version,
            "tags": list(self.tags),
            "depends_on": list(self.depends_on),
            "base": self.base.to_json(),
            **({"details": list(self.details)} if self.details else {}),
            "method": self.method,
            "why": self.why,
        }
        if self.blocked:
            data["blocked"] = self.blocked
        return data

    def to_saved(self) -> dict[str, Any]:
        """The public shape plus what apply needs."""
        data = self.to_json()
        data["base"] = {**data["base"], "name": self.base.name, "internal": self.base.internal}
        data.update(
            held_tags=list(self.held_tags),
            inputs=self.inputs,
            depth=self.depth,
            templates=list(self.templates),
        )
        if self.frontend is not None:
            data["frontend"] = self.frontend
        data.update(old_digest=self.old_digest, old_base_digest=self.old_base_digest)
        return data

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> Action:
        base = data["base"]
        return cls(
            image=data["image"],
            family=data["family"],
            repository=data["repository"],
            reasons=tuple(StaleReason(r) for r in data["reasons"]),
            from_version=data["from_version"],
            to_version=data["to_version"],
            tags=tuple(data["tags"]),
            held_tags=tuple(data.get("held_tags", ())),
            depends_on=tuple(data["depends_on"]),
            base=BaseUse(
                base["name"],
                base["ref"],
                base["digest"],
                bool(base["internal"]),
                dict(base.get("platforms") or {}),
                tag=written_tag(base["ref"]),
            ),
            inputs=data["inputs"],
            depth=int(data["depth"]),
            frontend=data.get("frontend"),
            blocked=str(data.get("blocked", "")),
            templates=tuple(data.get("templates", ())),
            details=tuple(data.get("details", ())),
            method=str(data.get("method", "build")),
            why=str(data.get("why", "")),
            old_digest=data.get("old_digest"),
            old_base_digest=data.get("old_base_digest"),
        )


@dataclass(frozen=True)
class Plan:
    """The ordered actions (parents first) and what stays as it is."""

    actions: tuple[Action, ...]
    unchanged: tuple[str, ...]
    left_out: tuple[str, ...] = ()  # stale images excluded by --only
    base_digests: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    revision: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    @cached_property
    def _by_image(self) -> dict[str, Action]:
        """The actions by image name, built once (plans of 10,000 images stay linear)."""
        return {a.image: a for a in self.actions}

    @property
    def blocked(self) -> tuple[Action, ...]:
        """Actions that cannot be applied as planned (e.g. an immutable tag in the way)."""
        return tuple(a for a in self.actions if a.blocked)

    def action(self, image: str) -> Action | None:
        return self._by_image.get(image)

    def to_json(self) -> dict[str, Any]:
        """`plan --json` (docs/design.md section 8)."""
        return {
            "format": 1,
            "actions": [a.to_json() for a in self.actions],
            "unchanged": list(self.unchanged),
        }
