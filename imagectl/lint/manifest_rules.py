"""Best-practice rules over the manifest (IC1xx).

The resolved `Manifest` says what each image is built on; where a `from:` was written
(on the image or on its family, a `bases:` key or a literal reference) is read back
from the YAML sources, so that every finding points at the line to change. A tag
list without `{version}` is refused by the loader already, so it needs no rule here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from imagectl.domain.reference import InvalidReferenceError, parse_reference
from imagectl.errors import ImagectlError, Location
from imagectl.inputs import ContextHasher
from imagectl.lint.dockerfile_rules import SECRET, looks_secret
from imagectl.lint.findings import RULE_ID_RE, RULES, Owned, register
from imagectl.manifest.loader import display_path
from imagectl.manifest.models import ImageConfig, Manifest
from imagectl.manifest.yamlsource import YamlSource, YamlSourceError, load_yaml

UNKNOWN_IGNORE = register(
    "IC100", "warning", "lint.ignore names an unknown rule",
    "use an id from `docs/lint.md` (IC…) or hadolint's (DL…, SC…)",
)  # fmt: skip
LATEST = register(
    "IC101", "warning", "the base uses `latest` or no tag",
    "name a version tag, e.g. debian:bookworm-slim; imagectl still follows its digest",
)  # fmt: skip
LITERAL = register(
    "IC102", "warning", "an external base is written as a literal `from:` reference",
    "declare it under bases: so it is followed by digest, and use its key in `from:`",
)  # fmt: skip
PINNED = register(
    "IC103", "info", "the base is pinned by digest, so its security updates never arrive",
    "drop @sha256:…: imagectl pins the digest at build time and follows the tag",
)  # fmt: skip
GIT_IN_CONTEXT = register(
    "IC105", "warning", "a build context holds the repository's .git",
    "add `.git` to the context's .dockerignore, and to .containerignore for buildah",
)  # fmt: skip
FAMILY_BASE = register(
    "IC104", "warning", "an image does not share its family's base",
    "build it on the family base (or an image built on it), or give it its own family",
)  # fmt: skip


@dataclass(frozen=True)
class _Sources:
    by_file: dict[str, YamlSource]

    def value(self, file: str, *path: str) -> tuple[str | None, Location | None]:
        source = self.by_file.get(file)
        node = source.data if source is not None else None
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if source is None or not isinstance(node, str):
            return None, None
        return node, source.location(path)

    def first(self, paths: list[tuple[str, ...]]) -> Location | None:
        """Where the first of `paths` that some file writes is written (any file, key)."""
        for path in paths:
            for source in self.by_file.values():
                node = source.data
                for key in path:
                    node = node.get(key) if isinstance(node, dict) else None
                if node is not None:
                    return source.location(path, key=True)
        return None

    def base_keys(self) -> set[str]:
        keys: set[str] = set()
        for source in self.by_file.values():
            bases = source.data.get("bases") if isinstance(source.data, dict) else None
            keys.update(bases if isinstance(bases, dict) else ())
        return keys


def _load(manifest: Manifest) -> _Sources:
    by_file: dict[str, YamlSource] = {}
    for path in manifest.files:
        display = display_path(path, manifest.root_dir)
        try:
            by_file[display] = load_yaml(path, display)
        except YamlSourceError:
            continue  # it loaded a moment ago; a file changed since loses its locations only
    return _Sources(by_file)


def _from_location(image: ImageConfig, sources: _Sources) -> Location:
    file = image.location.file
    image_path = ("families", image.family, "images", image.name, "from")
    for path in (image_path, ("families", image.family, "from")):
        _, location = sources.value(file, *path)
        if location is not None:
            return location
    return image.location


def _root(manifest: Manifest, name: str) -> tuple[str, list[str]]:
    """The external base at the bottom of `name`'s chain, and the images on the way."""
    chain: list[str] = []
    base = manifest.images[name].base
    while base in manifest.images and base not in chain:
        chain.append(base)
        base = manifest.images[base].base
    return base, chain


def _base_findings(manifest: Manifest, sources: _Sources) -> list[Owned]:
    declared = sources.base_keys()
    found: list[Owned] = []
    users: dict[str, list[ImageConfig]] = {}
    for image in manifest.images.values():
        users.setdefault(image.base, []).append(image)
    for key, base in manifest.bases.items():
        try:
            ref = parse_reference(base.ref)
        except InvalidReferenceError:
            continue  # the loader reports it
        sites: list[tuple[Location, tuple[str, ...]]]
        sites = [(_from_location(i, sources), (i.name,)) for i in users.get(key, [])]
        if key in declared:
            sites = [(base.location, tuple(i.name for i in users.get(key, [])))]
        for location, owners in sites:
            file, line = location.file, location.line
            here = []
            if key not in declared:
                message = f"base '{base.ref}' is a literal reference: declare it under bases: "
                here.append(LITERAL.at(file, line, message + "so it is followed by digest"))
            if ref.tag == "latest" and ref.digest is None:
                how = "`latest`" if base.ref.endswith(":latest") else "no tag (so `latest`)"
                message = f"base '{base.ref}' uses {how}: a new major version can arrive unseen"
                here.append(LATEST.at(file, line, message))
            if ref.digest is not None:
                message = f"base '{base.ref}' is pinned by digest: it never gets security updates"
                here.append(PINNED.at(file, line, message))
            found += [(finding, owners) for finding in here]
    return found


def _family_findings(manifest: Manifest, sources: _Sources) -> list[Owned]:
    found: list[Owned] = []
    families: dict[str, list[ImageConfig]] = {}
    for image in manifest.images.values():
        families.setdefault(image.family, []).append(image)
    for family, images in sorted(families.items()):
        family_base, _ = sources.value(images[0].location.file, "families", family, "from")
        roots = {i.name: _root(manifest, i.name) for i in images}
        common = Counter(root for root, _ in roots.values()).most_common(1)[0][0]
        for image in images:
            root, chain = roots[image.name]
            if family_base is not None:
                if family_base in (image.base, root, *chain):
                    continue
                why = f"family '{family}' is built on '{family_base}'"
            elif root == common:
                continue
            else:
                why = f"the other images of family '{family}' are built on '{common}'"
            location = _from_location(image, sources)
            message = f"image '{image.name}' is built on '{image.base}' but {why}"
            found.append((FAMILY_BASE.at(location.file, location.line, message), (image.name,)))
    return found


def _ignore_findings(manifest: Manifest) -> list[Owned]:
    found: list[Owned] = []
    for image in manifest.images.values():
        for rule in image.lint_ignore:
            known = rule.upper() in RULES or (
                RULE_ID_RE.fullmatch(rule.upper()) and not rule.upper().startswith("IC")
            )
            if not known:
                message = f"lint.ignore of image '{image.name}' names an unknown rule '{rule}'"
                location = image.location
                found.append((UNKNOWN_IGNORE.at(location.file, location.line, message), ()))
    return found


def _arg_findings(manifest: Manifest, sources: _Sources) -> list[Owned]:
    """IC207 on the manifest's `args:`: a build arg's value is on the builder's command line.

    Docker and buildah print it with the command (`ps`, `.imagectl/logs`) and keep it in
    the image history when the Dockerfile declares it, so a secret-looking arg is an
    error whether or not an `ARG` consumes it. The value is never quoted.
    """
    found: list[Owned] = []
    for image in manifest.images.values():
        for key, value in image.args:
            if not looks_secret(key, value):
                continue
            where = sources.first(
                [
                    ("families", image.family, "images", image.name, "args", key),
                    ("families", image.family, "args", key),
                    ("defaults", "args", key),
                ]
            )
            location = where or image.location
            message = (
                f"build arg {key} of image '{image.name}': a secret in `args:` is on the "
                "builder's command line, in the build log and, once declared, in the image"
            )
            found.append((SECRET.at(location.file, location.line, message), (image.name,)))
    return found


def _context_findings(manifest: Manifest, sources: _Sources) -> list[Owned]:
    """IC105: imagectl never sends .git, but `docker build` by hand sends all of history."""
    found: list[Owned] = []
    hasher = ContextHasher(manifest.root_dir)
    for image in manifest.images.values():
        if not (image.context / ".git").exists():
            continue
        try:
            rules = hasher.ignore_rules(image.context, image.dockerfile, image.builder)
        except ImagectlError:
            continue  # a bad ignore file fails validate and plan already
        if rules.excluded(".git", True):
            continue
        where = sources.first([("families", image.family, "images", image.name, "context")])
        location = where or image.location
        shown = display_path(image.context, manifest.root_dir)
        message = (
            f"the context '{shown}' of image '{image.name}' holds the repository's .git: "
            "imagectl leaves it out, but `docker build` run by hand sends the whole history"
        )
        found.append((GIT_IN_CONTEXT.at(location.file, location.line, message), (image.name,)))
    return found


def check_manifest(manifest: Manifest) -> list[Owned]:
    """Every IC1xx finding, each with the images it concerns (for per-image ignores)."""
    sources = _load(manifest)
    return (
        _base_findings(manifest, sources)
        + _family_findings(manifest, sources)
        + _ignore_findings(manifest)
        + _arg_findings(manifest, sources)
        + _context_findings(manifest, sources)
    )
