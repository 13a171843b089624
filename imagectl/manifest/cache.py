"""A cache of the resolved manifest, so that cron-frequency plans of big fleets stay fast.

Loading 2,000 images means parsing and validating a hundred YAML files; most
runs see the same files as the last one. After a successful load the resolved
manifest is stored in `.imagectl/cache/manifest.json` with every fact it was
derived from: the sha256 of each file read, the matches of each `include` glob,
and the filesystem answers about contexts and Dockerfiles (present, inside the
repository). A later load re-checks all of those facts (cheap: hashing and
stat calls) and uses the stored result only when every one still holds; any
doubt means a full load. Only successful loads are stored, so bad input is
always reported in full. `IMAGECTL_NO_CACHE=1` turns it off. JSON, not pickle:
a cache file in a repository must never be able to run code.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from imagectl import __version__
from imagectl.columnar import to_columns, values_of
from imagectl.errors import Location
from imagectl.fsutil import atomic_write, state_dir
from imagectl.gcpause import paused_gc
from imagectl.manifest.models import BaseConfig, ImageConfig, Manifest, SecretRef, SignRef

# 2: references normalised (hosts lowercased); 3: sign/sbom/verify settings;
# 4: images as rows of values, one header of field names; 5: each field's distinct
# values stored once ("values"), an image's row holds their indexes
FORMAT = 5
_FIELDS = [f.name for f in fields(ImageConfig)]


def cache_file(root: Path) -> Path:
    """Where the cache of the manifest rooted at `root` lives."""
    return root.parent / ".imagectl" / "cache" / "manifest.json"


def enabled() -> bool:
    """False when `IMAGECTL_NO_CACHE` is set to anything but empty or 0."""
    return os.environ.get("IMAGECTL_NO_CACHE", "") in ("", "0")


def _sha(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _glob(base: str, pattern: str) -> list[str]:
    matches = sorted(glob.glob(os.path.join(base, pattern), recursive=True))
    return [m for m in matches if os.path.isfile(m)]


def _inside(
    path: str,
    real_root: str,
    real_dirs: dict[str, str],
    is_link: Callable[[str], bool] = os.path.islink,
) -> bool:
    """`Path(realpath(path)).is_relative_to(real_root)` by string work: both are absolute
    and normalised, so being under the root is a prefix ending at a separator."""
    real = _realpath(path, real_dirs, is_link)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _realpath(
    path: str, real_dirs: dict[str, str], is_link: Callable[[str], bool] = os.path.islink
) -> str:
    """`os.path.realpath(path)`, the same answer, with each directory resolved once
    (`real_dirs` memoizes them): a fleet's contexts and Dockerfiles share parents."""
    parent, name = os.path.split(path)
    if not parent or parent == path or name in ("", ".", "..") or is_link(path):
        return os.path.realpath(path)
    real_parent = real_dirs.get(parent)
    if real_parent is None:
        real_parent = real_dirs[parent] = _realpath(parent, real_dirs, is_link)
    return os.path.join(real_parent, name)


class _PathFacts:
    """The answers about paths the cache re-checks (`os.path.isdir`, `os.path.isfile`,
    inside the repository), the same answers, from one `lstat` per path: a fleet asks
    two of them about each context and each Dockerfile. A symlink is asked again in full."""

    def __init__(self, real_root: str) -> None:
        self.real_root = real_root
        self.real_dirs: dict[str, str] = {}
        self._stats: dict[str, os.stat_result | None] = {}

    def _mode(self, path: str) -> int | None:
        if path not in self._stats:
            try:
                self._stats[path] = os.lstat(path)
            except (OSError, ValueError):
                self._stats[path] = None
        found = self._stats[path]
        return None if found is None else found.st_mode

    def is_link(self, path: str) -> bool:
        mode = self._mode(path)
        return mode is not None and stat.S_ISLNK(mode)

    def is_dir(self, path: str) -> bool:
        mode = self._mode(path)
        if mode is not None and stat.S_ISLNK(mode):
            return os.path.isdir(path)
        return mode is not None and stat.S_ISDIR(mode)

    def is_file(self, path: str) -> bool:
        mode = self._mode(path)
        if mode is not None and stat.S_ISLNK(mode):
            return os.path.isfile(path)
        return mode is not None and stat.S_ISREG(mode)

    def inside(self, path: str) -> bool:
        return _inside(path, self.real_root, self.real_dirs, self.is_link)


def _image_to_json(image: ImageConfig) -> list[Any]:
    """One image as a row of values in `_FIELDS` order (keys once per file, not per image)."""
    data = asdict(image)
    data["context"], data["dockerfile"] = str(image.context), str(image.dockerfile)
    data["location"] = [image.location.file, image.location.line, image.location.col]
    if image.sign is not None:
        for field in ("key", "public_key"):
            path = getattr(image.sign, field)
            data["sign"][field] = str(path) if path else None
    return [data[name] for name in _FIELDS]


def _sign_from_json(data: dict[str, Any] | None) -> SignRef | None:
    if data is None:
        return None
    key, public = data["key"], data["public_key"]
    return SignRef(
        Path(key) if key else None,
        data["key_env"],
        data["passphrase_env"],
        Path(public) if public else None,
    )


def _base_to_json(base: BaseConfig) -> dict[str, Any]:
    data = asdict(base)
    data["verify_key"] = str(base.verify_key) if base.verify_key else None
    return data


def _base_from_json(data: dict[str, Any]) -> BaseConfig:
    key = data.get("verify_key")
    return BaseConfig(
        data["name"], data["ref"], Location(**data["location"]), Path(key) if key else None
    )


def _pairs(value: list[list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in value)


def _location(value: list[Any]) -> Location:
    """A cached ``[file, line, col]`` as a Location, built as `_image_reader` builds images
    (one per image: the frozen dataclass's __init__ was a third of reading the rows)."""
    file, line, col = value
    location: Location = object.__new__(Location)
    location.__dict__.update(file=file, line=line, col=col)
    return location


def _image_reader(columns: list[list[Any]]) -> Callable[[list[int]], ImageConfig]:
    """Turns a row of indexes back into an image. Each distinct value is converted once
    and shared by the images that have it: every field's type is immutable."""
    special: dict[str, Callable[[Any], Any]] = {
        "context": Path,
        "dockerfile": Path,
        "tags": tuple,
        "platforms": tuple,
        "args": _pairs,
        "labels": _pairs,
        "secrets": lambda value: tuple(SecretRef(**s) for s in value),
        "lint_ignore": tuple,
        "location": _location,
        "sign": _sign_from_json,
    }
    values = [
        [special[name](v) for v in column] if name in special else column
        for name, column in zip(_FIELDS, columns, strict=True)
    ]
    new = object.__new__

    def read(row: list[int]) -> ImageConfig:
        # The row is what `save` wrote from a validated ImageConfig (the cache key proves
        # the files are the same), so the frozen dataclass's __init__ (one
        # object.__setattr__ per field) is skipped: its fields are set as one dict.
        image: ImageConfig = new(ImageConfig)
        fields = image.__dict__
        fields.update(zip(_FIELDS, values_of(values, row), strict=True))
        # the cached property's value, stored where functools.cached_property stores it
        # (its first access takes a lock: 2 µs an image, and a plan reads every one)
        fields["repository"] = f"{fields['registry'].rstrip('/')}/{fields['name']}"
        return image

    return read


def save(
    manifest: Manifest, globs: list[tuple[str, str]], paths: dict[str, dict[str, bool]]
) -> None:
    """Store `manifest` with the facts it was derived from (best effort: never fails a run)."""
    if not enabled():
        return
    images = (_image_to_json(i) for i in manifest.images.values())
    columns, rows = to_columns(images, len(_FIELDS))
    data = {
        "format": FORMAT,
        "imagectl": __version__,
        "root": str(manifest.root),
        "files": {str(p): _sha(str(p)) for p in manifest.files},
        "order": [str(p) for p in manifest.files],
        "globs": [[base, pattern, _glob(base, pattern)] for base, pattern in globs],
        "paths": paths,
        "image_fields": _FIELDS,
        "values": columns,
        "images": dict(zip(manifest.images, rows, strict=True)),
        "bases": {n: _base_to_json(b) for n, b in manifest.bases.items()},
    }
    try:
        state_dir(manifest.root_dir)
        target = cache_file(manifest.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps(data, separators=(",", ":")).encode("utf-8"))
    except OSError:
        pass


def load(root: Path) -> Manifest | None:
    """The cached manifest rooted at `root` when every fact behind it still holds.

    The cyclic garbage collector is paused meanwhile: decoding builds hundreds of
    thousands of containers, none of them in a cycle, and the collector scanning
    them again and again cost a third of the load of 10,000 images.
    """
    if not enabled():
        return None
    with paused_gc():
        return _load(root)


def _load(root: Path) -> Manifest | None:
    try:
        data = json.loads(cache_file(root).read_bytes())
        if data.get("format") != FORMAT or data.get("imagectl") != __version__:
            return None
        if data["root"] != str(root) or data["image_fields"] != _FIELDS:
            return None
        if any(_sha(path) != sha for path, sha in data["files"].items()):
            return None
        if any(_glob(base, pattern) != matches for base, pattern, matches in data["globs"]):
            return None
        facts = _PathFacts(os.path.realpath(root.parent))
        checks: dict[str, Callable[[str], bool]] = {
            "inside": facts.inside,
            "is_dir": facts.is_dir,
            "is_file": facts.is_file,
        }
        for kind, answers in data["paths"].items():
            check = checks[kind]
            if any(check(path) != answer for path, answer in answers.items()):
                return None
        read = _image_reader(data["values"])
        return Manifest(
            root=root,
            files=tuple(Path(p) for p in data["order"]),
            images={n: read(row) for n, row in data["images"].items()},
            bases={n: _base_from_json(b) for n, b in data["bases"].items()},
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
