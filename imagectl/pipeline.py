"""The plan pipeline shared by `plan`, `apply`, `status` and `daemon`: load, observe, plan."""

from __future__ import annotations

import os
from datetime import datetime

from imagectl.manifest.models import Manifest
from imagectl.observe import observe
from imagectl.plan.model import Observed, Plan, PlanOptions
from imagectl.plan.plan import make_plan
from imagectl.registry import RegistryClient


def insecure_registries() -> list[str]:
    """Hosts spoken to over plain HTTP besides loopback (`IMAGECTL_INSECURE_REGISTRIES`)."""
    raw = os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "")
    return [host.strip() for host in raw.split(",") if host.strip()]


def make_client() -> RegistryClient:
    """The registry client for this process (docker config credentials, env settings)."""
    return RegistryClient(insecure_registries=insecure_registries())


def compute_plan(
    manifest: Manifest,
    client: RegistryClient,
    *,
    now: datetime,
    options: PlanOptions,
    refresh: bool = False,
) -> tuple[Plan, Observed]:
    """Observe the world and make the plan."""
    observed = observe(manifest, client, refresh=refresh)
    return make_plan(manifest, observed, now, options), observed
