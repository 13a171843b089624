"""OCI distribution client: references, manifests, labels, tags, auth and retries.

Public names are re-exported here; the modules are `reference`, `manifests`,
`credentials` (docker config and helpers), `auth` (challenges, tokens), `retry`,
`limits` (body sizes, deadlines, page cap), `deadline` (per-request deadline down to
the socket), `jsondoc` (JSON without tracebacks), `session` (HTTP, TLS, counting) and
`client` (`RegistryClient`).
"""

from __future__ import annotations

from imagectl.domain.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    InvalidReferenceError,
    Reference,
    parse_reference,
)
from imagectl.registry.client import RegistryClient
from imagectl.registry.credentials import (
    Credentials,
    CredentialSource,
    DefaultCredentials,
    DockerConfig,
    StaticCredentials,
)
from imagectl.registry.hosts import choose_scheme, choose_schemes
from imagectl.registry.manifests import (
    DEFAULT_PLATFORM,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    OciConfig,
    OciManifest,
    compute_digest,
)
from imagectl.registry.retry import RetryPolicy

__all__ = [
    "DEFAULT_PLATFORM",
    "DOCKER_HUB",
    "DOCKER_HUB_API",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "CredentialSource",
    "Credentials",
    "DefaultCredentials",
    "DockerConfig",
    "InvalidReferenceError",
    "ManifestInfo",
    "OciConfig",
    "OciManifest",
    "Reference",
    "RegistryClient",
    "RetryPolicy",
    "StaticCredentials",
    "choose_scheme",
    "choose_schemes",
    "compute_digest",
    "parse_reference",
]
