"""devenv's registry configuration: the blob descriptor cache the official image ships,
and the process environment (``GOGC=400`` unless the caller sets it).

The rebase benchmark's registry CPU (and every test's registry) depend on it; both sides
of the benchmark (rebase and rebuild) use the same registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from devenv import registry
from devenv.registry import _config_yaml, registry_env


def test_the_registry_caches_blob_descriptors_in_memory(tmp_path: Path) -> None:
    text = _config_yaml(tmp_path / "storage", 5000, "auth:\n  htpasswd:\n    realm: r\n")
    config = YAML(typ="safe").load(text)
    storage = config["storage"]
    assert storage["cache"] == {"blobdescriptor": "inmemory"}
    assert storage["filesystem"] == {"rootdirectory": str(tmp_path / "storage")}
    assert storage["delete"] == {"enabled": True}
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["auth"]["htpasswd"]["realm"] == "r"


def test_the_registry_runs_with_gogc_400_unless_the_caller_sets_it() -> None:
    assert registry_env({"PATH": "/usr/bin"}) == {"PATH": "/usr/bin", "GOGC": "400"}
    assert registry_env({"GOGC": "100"}) == {"GOGC": "100"}
    assert registry_env({"GOGC": "off"}) == {"GOGC": "off"}
    assert registry_env({"GOGC": ""}) == {"GOGC": ""}  # set, empty: Go's default (100)


def test_the_registry_process_is_started_with_that_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Mapping[str, str] | None] = []

    def popen(argv: list[str], **kwargs: Any) -> None:
        started.append(kwargs.get("env"))
        raise _Stop

    monkeypatch.setenv("GOGC", "250")
    monkeypatch.setattr(registry.subprocess, "Popen", popen)
    monkeypatch.setattr(registry.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(_Stop):
        registry.start_registry(tmp_path, port=5000)
    monkeypatch.delenv("GOGC")
    with pytest.raises(_Stop):
        registry.start_registry(tmp_path, port=5000)
    gogc = [env.get("GOGC") if env is not None else None for env in started]
    assert gogc == ["250", "400"]
    assert started[1] is not None and started[1]["PATH"] == os.environ["PATH"]


class _Stop(Exception):
    """Raised by the fake Popen: nothing is started."""
