"""The labels imagectl puts on every image it builds (docs/design.md section 5)."""

from __future__ import annotations

from collections.abc import Mapping

LABEL_VERSION = "org.opencontainers.image.version"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_TITLE = "org.opencontainers.image.title"
LABEL_INPUTS = "dev.imagectl.inputs"
LABEL_FAMILY = "dev.imagectl.family"


def build_labels(
    *,
    user_labels: Mapping[str, str],
    name: str,
    family: str,
    version: str,
    base_name: str,
    base_digest: str,
    created: str,
    revision: str | None,
    source: str | None,
    inputs: str,
) -> dict[str, str]:
    """The user's labels overlaid with imagectl's own (which always win)."""
    labels = dict(user_labels)
    labels.update(
        {
            LABEL_VERSION: version,
            LABEL_BASE_NAME: base_name,
            LABEL_BASE_DIGEST: base_digest,
            LABEL_CREATED: created,
            LABEL_TITLE: name,
            LABEL_INPUTS: inputs,
            LABEL_FAMILY: family,
        }
    )
    if revision:
        labels[LABEL_REVISION] = revision
    if source:
        labels[LABEL_SOURCE] = source
    return dict(sorted(labels.items()))


def base_annotations(base_name: str, base_digest: str) -> dict[str, str]:
    """Manifest annotations other tools (regctl check-base, crane rebase) read."""
    return {LABEL_BASE_NAME: base_name, LABEL_BASE_DIGEST: base_digest}
