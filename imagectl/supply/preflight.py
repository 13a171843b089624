"""Checks made before anything is built: the tools and keys the supply chain needs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from imagectl.manifest.models import Manifest
from imagectl.supply.sbom import SbomError, find_trivy, require_trivy
from imagectl.supply.signing import load_key


def check_tools(manifest: Manifest, env: Mapping[str, str] | None = None) -> None:
    """`sbom: true` needs trivy: fail at plan time, naming how to install it.

    Raises:
        SbomError: trivy is missing; the message lists the images that want an SBOM.
    """
    wanting = sorted(name for name, image in manifest.images.items() if image.sbom)
    if wanting and find_trivy(env) is None:
        try:
            require_trivy(env)
        except SbomError as exc:
            shown = ", ".join(wanting[:5]) + (" ..." if len(wanting) > 5 else "")
            raise SbomError(f"{exc} (images with `sbom: true`: {shown})") from exc


def check_keys(
    manifest: Manifest, images: Iterable[str], env: Mapping[str, str] | None = None
) -> None:
    """Every signing key the images to build need can be read and decrypted.

    Raises:
        KeyError_: the first key that cannot (before any image is built or pushed).
    """
    env = os.environ if env is None else env
    seen = set()
    for name in images:
        sign = manifest.images[name].sign
        if sign is not None and sign not in seen:
            seen.add(sign)
            load_key(sign, env)
