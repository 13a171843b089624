"""make_plan: a pure function of the manifest, the observed facts and now.

Images are visited parents first; each gets every reason of docs/design.md section 4
that applies. An image whose base is rebuilt is `base-rebuilt`; nothing is
rebuilt without a reason.
"""

from __future__ import annotations

from datetime import datetime

from imagectl.domain.graph import ImageGraph
from imagectl.domain.reference import without_digest, written_tag
from imagectl.domain.schedules import Interval, parse_schedule
from imagectl.domain.tags import (
    RenderedTag,
    TagContext,
    TagError,
    immutable_conflict,
    may_move_floating,
    render_tags,
)
from imagectl.domain.versions import Bump, next_version, version_changed
from imagectl.errors import PlanError
from imagectl.manifest.models import ImageConfig, Manifest
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
from imagectl.platforms import host_platform, requested_digests, same_platform


def tag_of(ref: str) -> str:
    """The tag of a reference (`repo:tag@sha256:…` -> `tag`; "" when there is none)."""
    return written_tag(ref)


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


_BASE_ONLY = frozenset({StaleReason.BASE_UPDATED, StaleReason.BASE_REBUILT})
_REASON_ORDER = {reason: index for index, reason in enumerate(StaleReason)}
_BUMPS = {bump.value: bump for bump in Bump}


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
        self.date = now.strftime("%Y%m%d")  # the build date of every new build
        self._latest: dict[str, datetime | None] = {}  # rebuild: -> its latest occurrence
        # (declared, bump, built) -> version_changed: a fleet repeats a few of them, and
        # the enum's hash (Python code) made each call cost as much as the rest of a visit
        self._version_changed: dict[tuple[str, str, str], bool] = {}
        # (external base, platforms) -> its use: the same for every image on it
        self._external: dict[tuple[str, tuple[str, ...]], BaseUse] = {}
        self._internal: dict[str, BaseUse] = {}  # internal base -> its use

    def version_changed(self, image: ImageConfig, built: BuiltState) -> bool:
        """`version_changed` of the image's declared version against the built one."""
        key = (image.version, image.bump, built.version)
        known = self._version_changed.get(key)
        if known is None:
            known = version_changed(image.version, _BUMPS[image.bump], built.version)
            self._version_changed[key] = known
        return known

    def due(self, rebuild: str, built_at: datetime) -> bool:
        """`parse_schedule(rebuild).is_due(built_at, now)`, the same answer, with the latest
        occurrence of a calendar schedule (it does not depend on the build) found once per
        plan: a fleet shares a few `rebuild:` values among thousands of images."""
        schedule = parse_schedule(rebuild)
        if isinstance(schedule, Interval) or built_at.utcoffset() is None:
            return schedule.is_due(built_at, self.now)  # counted from the build; or an error
        if rebuild not in self._latest:
            self._latest[rebuild] = schedule.latest_occurrence(self.now)
        latest = self._latest[rebuild]
        return latest is not None and latest > built_at

    def base_use(self, image: ImageConfig) -> BaseUse:
        """The base `image` builds on; one object per base, shared by the images on it
        (an internal base is visited, its action final, before any image on it)."""
        parent = self.manifest.images.get(image.base)
        if parent is not None:
            known = self._internal.get(parent.name)
            if known is None:
                known = self._internal[parent.name] = self._internal_use(parent)
            return known
        key = (image.base, image.platforms)
        known = self._external.get(key)
        if known is None:
            known = self._external[key] = self._external_use(image)
        return known

    def _internal_use(self, parent: ImageConfig) -> BaseUse:
        planned = self.actions.get(parent.name)
        if planned is not None and self._builds(parent.name):
            version = planned.to_version
            return BaseUse(parent.name, f"{parent.repository}:{version}", None, True, tag=version)
        built = self.observed.built.get(parent.name)
        if built is None:  # parent unbuilt and not planned: only under --only filtering
            return BaseUse(parent.name, f"{parent.repository}:?", None, True)
        version = built.version
        return BaseUse(
            parent.name, f"{parent.repository}:{version}", built.digest, True, tag=version
        )

    def _external_use(self, image: ImageConfig) -> BaseUse:
        base = self.manifest.bases[image.base]
        digest = self.observed.base_digests.get(image.base)
        if digest is None:
            raise PlanError(f"no digest observed for base '{image.base}' ({base.ref})")
        platforms: dict[str, str] = {}
        if image.platforms:
            available = self.observed.base_platforms.get(image.base, {})
            platforms = requested_digests(available, image.platforms)
        ref = without_digest(base.ref)
        return BaseUse(image.base, ref, digest, False, platforms, tag=written_tag(ref))

    def platform_problem(self, image: ImageConfig, base: BaseUse) -> str | None:
        """Why the base cannot serve every platform the image asks for, or None."""
        if not image.platforms:
            return None
        if base.internal:
            parent = self.manifest.images[base.name]
            have = list(parent.platforms) or [host_platform()]
            what = f"its base image '{base.name}' is built for"
        else:
            have = sorted(self.observed.base_platforms.get(base.name, {}))
            what = f"base '{base.name}' ({base.ref}@{base.digest}) has images for"
        lacking = [p for p in image.platforms if not any(same_platform(p, h) for h in have)]
        if not lacking:
            return None
        return (
            f"platform{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} asked for, but "
            f"{what} {', '.join(have) or 'no platform'}; remove "
            f"{'them' if len(lacking) > 1 else 'it'} from `platforms:` or use a base that has "
            f"{'them' if len(lacking) > 1 else 'it'}"
        )

    def moved_platforms(self, base: BaseUse, built: BuiltState) -> list[str] | None:
        """Platforms whose base image moved since the build; None: not recorded per platform."""
        if base.internal or not built.base_platforms or not base.platforms:
            return None
        return [
            f"{platform} {built.base_platforms.get(platform, 'nothing')[:19]} -> {digest[:19]}"
            for platform, digest in base.platforms.items()
            if built.base_platforms.get(platform) != digest
        ]

    def _builds(self, name: str) -> bool:
        """Whether `name` is built (not only re-tagged) in this plan."""
        planned = self.actions.get(name)
        return planned is not None and not planned.retag_only

    def reasons(
        self, image: ImageConfig, built: BuiltState | None, base: BaseUse
    ) -> tuple[list[StaleReason], list[str]]:
        """Why `image` is stale, and what a reason means here (which platform moved)."""
        name = image.name
        found: list[StaleReason] = []
        details: list[str] = []
        if built is None:
            found.append(StaleReason.NEW)
        else:
            if self.version_changed(image, built):
                found.append(StaleReason.VERSION_CHANGED)
            if self.observed.inputs.get(name) != built.inputs:
                found.append(StaleReason.INPUTS_CHANGED)
            moved = self.moved_platforms(base, built)
            same_ref = without_digest(built.base_ref) == base.ref
            if moved is not None and (moved or not same_ref):
                found.append(StaleReason.BASE_UPDATED)
                details += [f"base-updated: {m}" for m in moved]
            elif (
                moved is None
                and not base.internal
                and (base.digest != built.base_digest or not same_ref)
            ):
                found.append(StaleReason.BASE_UPDATED)
            if base.internal and (base.digest is None or base.digest != built.base_digest):
                found.append(StaleReason.BASE_REBUILT)
            if self.due(image.rebuild, built.built_at):
                found.append(StaleReason.SCHEDULE_DUE)
            if name in self.observed.missing or (
                built.repository and built.repository != image.repository
            ):
                found.append(StaleReason.MISSING)  # gone, or the image moved to a new place
            found += self.observed.tag_drift.get(name, ())
        if name in self.options.force:
            found.append(StaleReason.FORCED)
        return found, details

    def rendered(
        self, image: ImageConfig, version: str, base: BaseUse, built: BuiltState | None
    ) -> list[RenderedTag]:
        """The tags of the build of `version`: a new build's, or the current one's (retag)."""
        if built is not None and version == built.version:
            return [RenderedTag(version, True, "{version}"), *current_floating_tags(image, built)]
        revision = self.observed.revision or ""
        ctx = TagContext(version=version, date=self.date, sha=revision[:7], base_tag=base.tag)
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

    def method(
        self, image: ImageConfig, reasons: list[StaleReason], built: BuiltState | None
    ) -> tuple[str, str]:
        """("build" or "rebase", why) for a stale image (see `update:`)."""
        if image.update == "build":
            return "build", "update: build"
        others = [str(r) for r in reasons if r not in _BASE_ONLY]
        if others or built is None:
            return "build", f"{', '.join(others) or 'new'}: a rebase only moves the base"
        problem = self.observed.rebase_problems.get(image.name, "")
        if problem:
            if image.update == "rebase":
                raise PlanError(
                    f"update: rebase, but the Dockerfile is not safe to rebase: {problem} "
                    "(set update: auto to build such images, or update: build)"
                )
            return "build", f"not safe to rebase: {problem}"
        if not built.base_digest:
            return "build", "the old image records no base digest"
        return "rebase", "only the base moved and the final stage only adds files on it"

    def visit(self, name: str) -> None:
        image = self.manifest.images[name]
        built = self.observed.built.get(name)
        base = self.base_use(image)
        problem = self.platform_problem(image, base)
        if problem:
            self.errors.append(f"{image.location}: image '{name}': {problem}")
            return
        reasons, details = self.reasons(image, built, base)
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
            method, why = self.method(image, reasons, built)
        except (PlanError, TagError) as exc:
            self.errors.append(f"{image.location}: image '{name}': {exc}")
            return
        self.actions[name] = Action(
            image=name,
            family=image.family,
            repository=image.repository,
            reasons=tuple(sorted(set(reasons), key=_REASON_ORDER.__getitem__)),
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
            details=tuple(details),
            method=method,
            why=why,
            old_digest=built.digest if method == "rebase" and built else None,
            old_base_digest=built.base_digest if method == "rebase" and built else None,
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
