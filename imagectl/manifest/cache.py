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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from imagectl import __version__
from imagectl.errors import Location
from imagectl.fsutil import atomic_write, state_dir
from imagectl.manifest.models import BaseConfig, ImageConfig, Manifest, SecretRef, SignRef

FORMAT = 3  # 2: references normalised (hosts lowercased) when resolved; 3: sign/sbom/verify


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


def _inside(path: str, real_root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(real_root)


def _image_to_json(image: ImageConfig) -> dict[str, Any]:
    data = asdict(image)
    data["context"], data["dockerfile"] = str(image.context), str(image.dockerfile)
    if image.sign is not None:
        for field in ("key", "public_key"):
            path = getattr(image.sign, field)
            data["sign"][field] = str(path) if path else None
    return data


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


def _image_from_json(data: dict[str, Any], paths: dict[str, Path]) -> ImageConfig:
    """One image; `paths` memoizes Path objects (images of a family share a context)."""
    loc = data["location"]
    context, dockerfile = data["context"], data["dockerfile"]
    return ImageConfig(
        **{
            **data,
            "context": paths.get(context) or paths.setdefault(context, Path(context)),
            "dockerfile": paths.get(dockerfile) or paths.setdefault(dockerfile, Path(dockerfile)),
            "tags": tuple(data["tags"]),
            "platforms": tuple(data["platforms"]),
            "args": tuple((k, v) for k, v in data["args"]),
            "labels": tuple((k, v) for k, v in data["labels"]),
            "secrets": tuple(SecretRef(**s) for s in data["secrets"]),
            "lint_ignore": tuple(data["lint_ignore"]),
            "location": Location(loc["file"], loc["line"], loc["col"]),
            "sign": _sign_from_json(data.get("sign")),
        }
    )


def save(
    manifest: Manifest, globs: list[tuple[str, str]], paths: dict[str, dict[str, bool]]
) -> None:
    """Store `manifest` with the facts it was derived from (best effort: never fails a run)."""
    if not enabled():
        return
    data = {
        "format": FORMAT,
        "imagectl": __version__,
        "root": str(manifest.root),
        "files": {str(p): _sha(str(p)) for p in manifest.files},
        "order": [str(p) for p in manifest.files],
        "globs": [[base, pattern, _glob(base, pattern)] for base, pattern in globs],
        "paths": paths,
        "images": {n: _image_to_json(i) for n, i in manifest.images.items()},
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
    """The cached manifest rooted at `root` when every fact behind it still holds."""
    if not enabled():
        return None
    try:
        data = json.loads(cache_file(root).read_bytes())
        if data.get("format") != FORMAT or data.get("imagectl") != __version__:
            return None
        if data["root"] != str(root):
            return None
        if any(_sha(path) != sha for path, sha in data["files"].items()):
            return None
        if any(_glob(base, pattern) != matches for base, pattern, matches in data["globs"]):
            return None
        real_root = Path(os.path.realpath(root.parent))

        def inside(path: str) -> bool:
            return _inside(path, real_root)

        checks: dict[str, Callable[[str], bool]] = {
            "inside": inside,
            "is_dir": os.path.isdir,
            "is_file": os.path.isfile,
        }
        for kind, answers in data["paths"].items():
            check = checks[kind]
            if any(check(path) != answer for path, answer in answers.items()):
                return None
        paths: dict[str, Path] = {}
        return Manifest(
            root=root,
            files=tuple(Path(p) for p in data["order"]),
            images={n: _image_from_json(i, paths) for n, i in data["images"].items()},
            bases={n: _base_from_json(b) for n, b in data["bases"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
