"""make_plan: a pure function of the manifest, the observed facts and now.

Images are visited parents first; each gets every reason of docs/design.md section 4
that applies. An image whose base is rebuilt is `base-rebuilt`; nothing is
rebuilt without a reason.
"""

from __future__ import annotations

from datetime import datetime

from imagectl.errors import PlanError
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.plan.graph import ImageGraph
from imagectl.plan.model import (
    RETAG_REASONS,
    Action,
    BaseUse,
    BuiltState,
    Observed,
    Plan,
    PlanOptions,
    StaleReason,
)
from imagectl.plan.schedules import parse_schedule
from imagectl.plan.tags import (
    RenderedTag,
    TagContext,
    TagError,
    immutable_conflict,
    may_move_floating,
    render_tags,
)
from imagectl.plan.versions import Bump, next_version, version_changed


def tag_of(ref: str) -> str:
    """The tag of a reference (`repo:tag@sha256:…` -> `tag`; "" when there is none)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def strip_digest(ref: str) -> str:
    """A reference by tag only (what `.base.name` records)."""
    return ref.split("@", 1)[0]


def current_floating_tags(image: ImageConfig, built: BuiltState) -> list[RenderedTag]:
    """The floating tags the current build of `image` should carry, as far as they are known.

    Rendered with what that build knew (its date, commit and base tag); a template
    that cannot be rendered from what is known about it (e.g. `{sha}` of a build
    recovered from a registry without the label) is left out.
    """
    ctx = TagContext(
        version=built.version,
        date=built.built_at.strftime("%Y%m%d"),
        sha=built.revision[:7],
        base_tag=tag_of(built.base_ref),
    )
    found: list[RenderedTag] = []
    for template in image.tags:
        try:
            found += [t for t in render_tags([template, "{version}"], ctx) if not t.immutable]
        except TagError:
            continue
    return list({t.name: t for t in found}.values())


class _Planner:
    def __init__(
        self, manifest: Manifest, observed: Observed, now: datetime, options: PlanOptions
    ) -> None:
        self.manifest = manifest
        self.observed = observed
        self.now = now
        self.options = options
        self.graph = ImageGraph.build({n: i.base for n, i in manifest.images.items()})
        self.actions: dict[str, Action] = {}
        self.errors: list[str] = []

    def base_use(self, image: ImageConfig) -> BaseUse:
        if self.manifest.is_internal(image.base):
            parent = self.manifest.images[image.base]
            planned = self.actions.get(parent.name)
            if planned is not None and self._builds(parent.name):
                return BaseUse(parent.name, f"{parent.repository}:{planned.to_version}", None, True)
            built = self.observed.built.get(parent.name)
            if built is None:  # parent unbuilt and not planned: only under --only filtering
                return BaseUse(parent.name, f"{parent.repository}:?", None, True)
            return BaseUse(parent.name, f"{parent.repository}:{built.version}", built.digest, True)
        base = self.manifest.bases[image.base]
        digest = self.observed.base_digests.get(image.base)
        if digest is None:
            raise PlanError(f"no digest observed for base '{image.base}' ({base.ref})")
        return BaseUse(image.base, strip_digest(base.ref), digest, False)

    def _builds(self, name: str) -> bool:
        """Whether `name` is built (not only re-tagged) in this plan."""
        planned = self.actions.get(name)
        return planned is not None and not planned.retag_only

    def reasons(
        self, image: ImageConfig, built: BuiltState | None, base: BaseUse
    ) -> list[StaleReason]:
        name = image.name
        found: list[StaleReason] = []
        if built is None:
            found.append(StaleReason.NEW)
        else:
            if version_changed(image.version, Bump(image.bump), built.version):
                found.append(StaleReason.VERSION_CHANGED)
            if self.observed.inputs.get(name) != built.inputs:
                found.append(StaleReason.INPUTS_CHANGED)
            if not base.internal and (
                base.digest != built.base_digest or strip_digest(built.base_ref) != base.ref
            ):
                found.append(StaleReason.BASE_UPDATED)
            if base.internal and (base.digest is None or base.digest != built.base_digest):
                found.append(StaleReason.BASE_REBUILT)
            if parse_schedule(image.rebuild).is_due(built.built_at, self.now):
                found.append(StaleReason.SCHEDULE_DUE)
            if name in self.observed.missing or (
                built.repository and built.repository != image.repository
            ):
                found.append(StaleReason.MISSING)  # gone, or the image moved to a new place
            found += self.observed.tag_drift.get(name, ())
        if name in self.options.force:
            found.append(StaleReason.FORCED)
        return found

    def rendered(
        self, image: ImageConfig, version: str, base: BaseUse, built: BuiltState | None
    ) -> list[RenderedTag]:
        """The tags of the build of `version`: a new build's, or the current one's (retag)."""
        if built is not None and version == built.version:
            return [RenderedTag(version, True, "{version}"), *current_floating_tags(image, built)]
        revision = self.observed.revision or ""
        ctx = TagContext(
            version=version,
            date=self.now.strftime("%Y%m%d"),
            sha=revision[:7],
            base_tag=tag_of(base.ref),
        )
        return render_tags(image.tags, ctx)

    def tags(
        self,
        image: ImageConfig,
        version: str,
        rendered: list[RenderedTag],
        built: BuiltState | None,
    ) -> tuple[tuple[RenderedTag, ...], tuple[str, ...], str]:
        """(immutable then movable tags, held tags, why the build is blocked or "")."""
        immutable = [t for t in rendered if t.immutable]
        movable: list[RenderedTag] = []
        held: list[str] = []
        conflicts: list[str] = []
        history = built.history if built is not None else {}
        for tag in (t for t in rendered if not t.immutable):
            conflict = immutable_conflict(tag.name, tag.template, image.repository, history)
            if conflict is not None:
                conflicts.append(conflict)
                continue
            holder = built.version if built is not None and tag.name in built.tags else None
            if may_move_floating(version, holder):
                movable.append(tag)
            else:
                held.append(tag.name)
        if built is not None and version != built.version and version in history:
            conflicts.append(
                f"the version tag {image.repository}:{version} already exists; "
                "an immutable tag is never overwritten (run `imagectl plan --refresh`)"
            )
        blocked = "; ".join(f"{image.location}: {c}" for c in conflicts)
        return (*immutable, *movable), tuple(held), blocked

    def visit(self, name: str) -> None:
        image = self.manifest.images[name]
        built = self.observed.built.get(name)
        base = self.base_use(image)
        reasons = self.reasons(image, built, base)
        if not reasons:
            return
        try:
            if built is not None and set(reasons) <= RETAG_REASONS:
                version = built.version  # only put the floating tags back: nothing to build
            else:
                version = next_version(
                    image.version, Bump(image.bump), built.version if built else None
                )
            tags, held, blocked = self.tags(
                image, version, self.rendered(image, version, base, built), built
            )
        except (PlanError, TagError) as exc:
            self.errors.append(f"{image.location}: image '{name}': {exc}")
            return
        self.actions[name] = Action(
            image=name,
            family=image.family,
            repository=image.repository,
            reasons=tuple(sorted(set(reasons), key=list(StaleReason).index)),
            from_version=built.version if built else None,
            to_version=version,
            tags=tuple(t.name for t in tags),
            held_tags=held,
            depends_on=(base.name,) if base.internal and self._builds(base.name) else (),
            base=base,
            inputs=self.observed.inputs.get(name, ""),
            depth=self.graph.depth(name),
            frontend=self.observed.frontends.get(name),
            blocked=self.observed.taken.get(name, blocked),
            templates=tuple(t.template for t in tags),
        )


def make_plan(
    manifest: Manifest,
    observed: Observed,
    now: datetime,
    options: PlanOptions | None = None,
) -> Plan:
    """What apply must rebuild, in build order, and why.

    Args:
        manifest: the resolved manifest.
        observed: base digests, last builds, inputs digests, missing images, revision.
        now: the planning time (UTC, aware).
        options: --force and --only selections.

    Raises:
        PlanError: unknown --force/--only names, a lowered version, an unrenderable tag.
    """
    options = options or PlanOptions()
    unknown = sorted((options.force | options.only) - set(manifest.images))
    if unknown:
        raise PlanError(
            f"unknown image{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
            f" (known: {', '.join(sorted(manifest.images))})"
        )
    planner = _Planner(manifest, observed, now, options)
    order = planner.graph.order()
    for name in order:
        planner.visit(name)
    if planner.errors:
        raise PlanError("\n".join(planner.errors))
    selected = planner.graph.closure(options.only) if options.only else set(order)
    actions = tuple(planner.actions[n] for n in order if n in planner.actions and n in selected)
    left_out = tuple(n for n in order if n in planner.actions and n not in selected)
    planned = {a.image for a in actions}
    return Plan(
        actions=actions,
        unchanged=tuple(sorted(n for n in order if n not in planned and n not in left_out)),
        left_out=left_out,
        base_digests=dict(sorted(observed.base_digests.items())),
        created_at=now,
        revision=observed.revision,
    )
