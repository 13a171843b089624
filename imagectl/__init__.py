"""imagectl: a declarative build pipeline for container images."""

from __future__ import annotations

__version__ = "0.1.0"
