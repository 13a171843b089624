"""Resolve validated files into one effective config per image, and check meaning.

Inheritance is defaults -> family -> image: a setting takes the value of the
nearest level that sets it; `args` and `labels` merge (nearest wins per key).
Every check reports a located problem; all are collected.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagectl.domain.graph import ImageGraph
from imagectl.domain.reference import InvalidReferenceError, parse_reference
from imagectl.domain.schedules import ScheduleError, parse_schedule
from imagectl.domain.tags import check_template, check_template_list
from imagectl.domain.versions import Bump, check_declared
from imagectl.durations import DURATION_HINT, parse_duration
from imagectl.errors import Problem
from imagectl.inputs import dockerfile_names
from imagectl.manifest.loader import LoadedFile, display_path
from imagectl.manifest.models import (
    DEFAULT_TAGS_PATCH,
    DEFAULT_TAGS_REVISION,
    DEFAULT_TIMEOUT,
    BaseConfig,
    FamilyModel,
    ImageConfig,
    ImageModel,
    Manifest,
    RootFile,
    SecretRef,
    Settings,
    SignRef,
)
from imagectl.manifest.refs import normalise_reference, normalise_registry
from imagectl.manifest.yamlsource import KeyPath, YamlSource, format_key_path

NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Level:
    """One level of settings (defaults, a family or an image) and where it is written."""

    settings: Settings
    source: YamlSource
    path: KeyPath


class _Resolver:
    def __init__(self, root: Path, files: Sequence[LoadedFile]) -> None:
        self.root = root
        self.root_dir = root.parent
        self.files = files
        self.problems: list[Problem] = []
        self.bases: dict[str, BaseConfig] = {}
        self.families: dict[str, tuple[FamilyModel, LoadedFile]] = {}
        self.image_defs: dict[str, tuple[ImageModel, str, LoadedFile]] = {}
        self.real_root = Path(os.path.realpath(self.root_dir))
        self._inside: dict[Path, bool] = {}
        self._is_dir: dict[Path, bool] = {}
        self._is_file: dict[Path, bool] = {}
        self._paths: dict[tuple[str, str, str], tuple[Path | None, Path | None]] = {}

    def problem(self, source: YamlSource, path: KeyPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(source.location(path), message, format_key_path(path), hint))

    # -- collection --------------------------------------------------------------------------
    def collect(self) -> None:
        for loaded in self.files:
            src = loaded.source
            for name, spec in loaded.model.bases.items():
                where = ("bases", name)
                if name in self.bases:
                    other = self.bases[name].location
                    self.problem(src, where, f"base '{name}' is also defined at {other}")
                    continue
                ref = spec.ref
                try:
                    ref = normalise_reference(spec.ref)
                    parse_reference(ref)
                except InvalidReferenceError as exc:
                    self.problem(src, (*where, "ref"), str(exc))
                verify_key = (
                    Path(os.path.normpath(src.path.parent / spec.verify.key))
                    if spec.verify
                    else None
                )
                self.bases[name] = BaseConfig(name, ref, src.location(where, key=True), verify_key)
            for fname, family in loaded.model.families.items():
                if fname in self.families:
                    other_src = self.families[fname][1].source
                    other = other_src.location(("families", fname), key=True)
                    self.problem(
                        src, ("families", fname), f"family '{fname}' is also defined at {other}"
                    )
                    continue
                self.families[fname] = (family, loaded)
                for iname, image in family.images.items():
                    ipath: KeyPath = ("families", fname, "images", iname)
                    if iname in self.image_defs:
                        _, ofam, oloaded = self.image_defs[iname]
                        other = oloaded.source.location(
                            ("families", ofam, "images", iname), key=True
                        )
                        self.problem(src, ipath, f"image '{iname}' is also defined at {other}")
                        continue
                    if not NAME_RE.fullmatch(iname):
                        self.problem(
                            src,
                            ipath,
                            f"'{iname}' is not a valid image name",
                            "use lowercase letters, digits and single . _ - separators",
                        )
                    self.image_defs[iname] = (image, fname, loaded)

    # -- per image ---------------------------------------------------------------------------
    def setting(self, levels: Sequence[Level], key: str) -> tuple[Any, Level | None]:
        for level in reversed(levels):
            value = getattr(level.settings, key)
            if value is not None:
                return value, level
        return None, None

    def merged(self, levels: Sequence[Level], key: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for level in levels:
            value = getattr(level.settings, key)
            if value:
                result.update(value)
        return result

    def resolve_base(self, name: str, image: ImageModel, levels: Sequence[Level]) -> str | None:
        base, level = self.setting_from(levels, image)
        if base is None or level is None:
            img = levels[-1]
            self.problem(
                img.source,
                img.path,
                f"image '{name}' has no base",
                "set `from:` on the image or on its family",
            )
            return None
        where = (*level.path, "from")
        if base in self.image_defs or base in self.bases:
            return str(base)
        if any(ch in base for ch in "/:@.") or base != base.strip():
            try:
                base = normalise_reference(base)
                parse_reference(base)
            except InvalidReferenceError as exc:
                self.problem(level.source, where, str(exc))
                return None
            self.bases.setdefault(base, BaseConfig(base, base, level.source.location(where)))
            return str(base)
        known = sorted(set(self.image_defs) | set(self.bases))
        close = difflib.get_close_matches(base, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else "name an image, a key of `bases:` or a reference"
        )
        self.problem(level.source, where, f"unknown base '{base}'", hint)
        return None

    def setting_from(self, levels: Sequence[Level], image: ImageModel) -> tuple[Any, Level | None]:
        for level in reversed(levels):
            value = getattr(level.settings, "from_", None)
            if value is not None:
                return value, level
        return None, None

    def resolve_image(
        self, name: str, image: ImageModel, fname: str, loaded: LoadedFile
    ) -> ImageConfig | None:
        root_file = self.files[0]
        assert isinstance(root_file.model, RootFile)
        family, floaded = self.families[fname]
        src = loaded.source
        ipath: KeyPath = ("families", fname, "images", name)
        levels = [
            Level(root_file.model.defaults, root_file.source, ("defaults",)),
            Level(family, floaded.source, ("families", fname)),
            Level(image, src, ipath),
        ]
        count = len(self.problems)
        base = self.resolve_base(name, image, levels)
        builder: Any = self.setting(levels, "builder")[0] or "docker"
        context, dockerfile = self.check_paths(image, src, ipath, builder)
        bump_value, _ = self.setting(levels, "bump")
        bump: Any = bump_value or "patch"
        message = check_declared(image.version, Bump(bump))
        if message:
            self.problem(src, (*ipath, "version"), message)
        tags_value, tags_level = self.setting(levels, "tags")
        tags = (
            tuple(tags_value)
            if tags_value is not None
            else (DEFAULT_TAGS_REVISION if bump == "revision" else DEFAULT_TAGS_PATCH)
        )
        allow_latest = bool(self.setting(levels, "allow_latest")[0])
        self.check_tags(tags, allow_latest, tags_level, src, ipath)
        rebuild, rlevel = self.setting(levels, "rebuild")
        if rebuild is not None and rlevel is not None:
            try:
                parse_schedule(rebuild)
            except ScheduleError as exc:
                self.problem(rlevel.source, (*rlevel.path, "rebuild"), str(exc))
        timeout_text, tlevel = self.setting(levels, "timeout")
        timeout = DEFAULT_TIMEOUT if timeout_text is None else parse_duration(timeout_text)
        if not timeout and tlevel is not None:
            what = "is not a duration" if timeout is None else "must be at least 1s"
            self.problem(
                tlevel.source, (*tlevel.path, "timeout"), f"'{timeout_text}' {what}", DURATION_HINT
            )
        platforms, plevel = self.setting(levels, "platforms")
        for index, platform in enumerate(platforms or []):
            if not PLATFORM_RE.fullmatch(platform) and plevel is not None:
                self.problem(
                    plevel.source,
                    (*plevel.path, "platforms", index),
                    f"'{platform}' is not a platform",
                    "write os/arch[/variant], e.g. linux/amd64",
                )
        registry = self.check_registry(
            self.setting(levels, "registry")[0] or root_file.model.registry, name, levels
        )
        args = self.merged(levels, "args")
        for key in args:
            if not ARG_RE.fullmatch(key) or key == "BASE_IMAGE":
                self.problem(
                    src,
                    (*ipath, "args", key),
                    f"'{key}' cannot be a build arg",
                    "BASE_IMAGE is set by imagectl" if key == "BASE_IMAGE" else "use a shell name",
                )
        secrets = tuple(SecretRef(s.id, s.env, s.file) for s in image.secrets or [])
        for index, secret in enumerate(secrets):
            if not SECRET_ID_RE.fullmatch(secret.id):
                self.problem(
                    src, (*ipath, "secrets", index, "id"), f"invalid secret id '{secret.id}'"
                )
        if len(self.problems) != count or base is None or context is None or dockerfile is None:
            return None
        lint = self.setting(levels, "lint")[0]
        sign = self.sign_ref(levels)
        sbom = bool(self.setting(levels, "sbom")[0])
        if sbom and sign is None:
            sbom_level = self.setting(levels, "sbom")[1] or levels[-1]
            self.problem(
                sbom_level.source,
                (*sbom_level.path, "sbom"),
                "`sbom: true` needs `sign:`: the SBOM is attached as a signed attestation",
            )
            return None
        return ImageConfig(
            name=name,
            family=fname,
            registry=str(registry),
            context=context,
            dockerfile=dockerfile,
            version=image.version,
            base=base,
            bump=bump,
            tags=tags,
            rebuild=str(rebuild or "never"),
            builder=builder,
            platforms=tuple(platforms or ()),
            network=self.setting(levels, "network")[0],
            args=tuple(sorted(args.items())),
            labels=tuple(sorted(self.merged(levels, "labels").items())),
            target=image.target,
            secrets=secrets,
            allow_latest=allow_latest,
            lint_ignore=tuple(lint.ignore) if lint else (),
            location=src.location(ipath, key=True),
            timeout=timeout or DEFAULT_TIMEOUT,
            sign=sign,
            sbom=sbom,
            update=self.setting(levels, "update")[0] or "build",
        )

    def sign_ref(self, levels: Sequence[Level]) -> SignRef | None:
        """The `sign:` setting, its key path relative to the file that sets it."""
        sign, level = self.setting(levels, "sign")
        if sign is None or level is None:
            return None
        here = level.source.path.parent
        key = Path(os.path.normpath(here / sign.key)) if sign.key else None
        public = Path(os.path.normpath(here / sign.public_key)) if sign.public_key else None
        return SignRef(key, sign.key_env, sign.passphrase_env, public)

    def check_registry(self, registry: str, name: str, levels: Sequence[Level]) -> str:
        """The registry normalised (host lowercased); a problem when it is invalid."""
        try:
            registry = normalise_registry(registry)
            if NAME_RE.fullmatch(name):  # an invalid name is reported already
                parse_reference(f"{registry.rstrip('/')}/{name}")
        except InvalidReferenceError as exc:
            reg_level = self.setting(levels, "registry")[1]
            where = (*reg_level.path, "registry") if reg_level else ("registry",)
            self.problem((reg_level or levels[0]).source, where, str(exc))
        return registry

    def check_tags(
        self,
        tags: Sequence[str],
        allow_latest: bool,
        level: Level | None,
        src: YamlSource,
        ipath: KeyPath,
    ) -> None:
        where_src, where = (level.source, (*level.path, "tags")) if level else (src, ipath)
        for index, message in check_template_list(tags, allow_latest):
            self.problem(where_src, where if index is None else (*where, index), message)
        for index, template in enumerate(tags):
            for message in check_template(template):
                self.problem(where_src, (*where, index), message)

    def inside(self, path: Path) -> bool:
        """`path` (symlinks resolved) is inside the repository; cached: contexts repeat."""
        found = self._inside.get(path)
        if found is None:
            found = Path(os.path.realpath(path)).is_relative_to(self.real_root)
            self._inside[path] = found
        return found

    def outside(self, what: str, given: str, path: Path) -> str:
        """Why `path` (written as `given`) is refused: outside, or a symlink leading out."""
        if path.is_relative_to(self.root_dir):  # lexically inside: a symlink leads out
            return (
                f"{what} '{given}' resolves through a symlink to "
                f"'{os.path.realpath(path)}', outside the repository"
            )
        return f"{what} '{given}' is outside the repository"

    def is_dir(self, path: Path) -> bool:
        found = self._is_dir.get(path)
        if found is None:
            found = self._is_dir[path] = path.is_dir()
        return found

    def is_file(self, path: Path) -> bool:
        found = self._is_file.get(path)
        if found is None:
            found = self._is_file[path] = path.is_file()
        return found

    def check_paths(
        self, image: ImageModel, src: YamlSource, ipath: KeyPath, builder: str
    ) -> tuple[Path | None, Path | None]:
        key = (str(src.path.parent), image.context, image.dockerfile or builder)
        known = self._paths.get(key)
        if known is not None:  # many images share a context: check it once
            return known
        found = self._check_paths(image, src, ipath, builder)
        if found[0] is not None and found[1] is not None:
            self._paths[key] = found
        return found

    def _check_paths(
        self, image: ImageModel, src: YamlSource, ipath: KeyPath, builder: str
    ) -> tuple[Path | None, Path | None]:
        base_dir = src.path.parent
        context = Path(os.path.normpath(base_dir / image.context))
        if not self.inside(context):
            self.problem(src, (*ipath, "context"), self.outside("context", image.context, context))
            return None, None
        if not self.is_dir(context):
            self.problem(
                src,
                (*ipath, "context"),
                f"context directory '{display_path(context, self.root_dir)}' does not exist",
            )
            return None, None
        name = image.dockerfile
        if not name:  # the builder's preferred name that exists (buildah: Containerfile)
            names = dockerfile_names(builder)
            name = next((n for n in names if self.is_file(context / n)), names[0])
        dockerfile = Path(os.path.normpath(context / name))
        key = (*ipath, "dockerfile") if image.dockerfile else (*ipath, "context")
        if not self.inside(dockerfile):
            given = image.dockerfile or display_path(dockerfile, self.root_dir)
            self.problem(src, key, self.outside("Dockerfile", given, dockerfile))
            return context, None
        if not self.is_file(dockerfile):
            self.problem(
                src, key, f"Dockerfile '{display_path(dockerfile, self.root_dir)}' does not exist"
            )
            return context, None
        return context, dockerfile

    # -- whole manifest ----------------------------------------------------------------------
    def check_cycles(self, images: dict[str, ImageConfig]) -> None:
        graph = ImageGraph.build({n: c.base for n, c in images.items()})
        cycle = graph.find_cycle()
        if cycle:
            first = cycle[0]
            _, fname, loaded = self.image_defs[first]
            self.problem(
                loaded.source,
                ("families", fname, "images", first, "from"),
                f"dependency cycle: {' -> '.join(cycle)}",
            )


def resolve_manifest(
    root: Path, files: Sequence[LoadedFile], facts: dict[str, dict[str, bool]] | None = None
) -> tuple[Manifest | None, list[Problem]]:
    """Turn validated files into a `Manifest`, or the list of problems found.

    `facts`, when given, receives the filesystem answers the result depends on
    (for the manifest cache).
    """
    resolver = _Resolver(root, files)
    resolver.collect()
    images: dict[str, ImageConfig] = {}
    for name, (image, fname, loaded) in resolver.image_defs.items():
        config = resolver.resolve_image(name, image, fname, loaded)
        if config is not None:
            images[name] = config
    resolver.check_cycles(images)
    if resolver.problems:
        return None, resolver.problems
    if facts is not None:
        facts["inside"] = {str(k): v for k, v in resolver._inside.items()}
        facts["is_dir"] = {str(k): v for k, v in resolver._is_dir.items()}
        facts["is_file"] = {str(k): v for k, v in resolver._is_file.items()}
    manifest = Manifest(
        root=root,
        files=tuple(f.source.path for f in files),
        images=dict(sorted(images.items())),
        bases=dict(sorted(resolver.bases.items())),
    )
    return manifest, []
