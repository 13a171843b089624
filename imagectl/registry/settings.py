"""The registry client of this process and its environment settings (retries, insecure hosts)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from imagectl.errors import UsageError
from imagectl.registry import RegistryClient, RetryPolicy
from imagectl.registry.limits import env_numbers

# Environment variable -> RetryPolicy field (README "Registry access").
RETRY_ENV = {
    "IMAGECTL_RETRY_ATTEMPTS": "attempts",
    "IMAGECTL_RETRY_BASE_DELAY": "base_delay",
    "IMAGECTL_RETRY_MAX_DELAY": "max_delay",
    "IMAGECTL_RETRY_MAX_RETRY_AFTER": "max_retry_after",
}


def insecure_registries() -> list[str]:
    """Hosts spoken to over plain HTTP besides loopback (`IMAGECTL_INSECURE_REGISTRIES`)."""
    raw = os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "")
    return [host.strip() for host in raw.split(",") if host.strip()]


def retry_policy(env: Mapping[str, str] | None = None) -> RetryPolicy:
    """The retry policy, tuned by `IMAGECTL_RETRY_*` (attempts, delays in seconds).

    Raises:
        UsageError: a value is not a number, or out of range (attempts < 1, a delay < 0).
    """
    values = env_numbers(env, RETRY_ENV, whole="attempts", positive=False)
    try:
        return RetryPolicy(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(f"IMAGECTL_RETRY_*: {exc}") from None


def make_client() -> RegistryClient:
    """The registry client for this process (docker config credentials, env settings)."""
    return RegistryClient(insecure_registries=insecure_registries(), retry=retry_policy())
