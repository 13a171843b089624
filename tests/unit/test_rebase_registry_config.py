"""devenv's registry configuration: the blob descriptor cache the official image ships.

The rebase benchmark's registry CPU (and every test's registry) depend on it; both sides
of the benchmark (rebase and rebuild) use the same registry.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from devenv.registry import _config_yaml


def test_the_registry_caches_blob_descriptors_in_memory(tmp_path: Path) -> None:
    text = _config_yaml(tmp_path / "storage", 5000, "auth:\n  htpasswd:\n    realm: r\n")
    config = YAML(typ="safe").load(text)
    storage = config["storage"]
    assert storage["cache"] == {"blobdescriptor": "inmemory"}
    assert storage["filesystem"] == {"rootdirectory": str(tmp_path / "storage")}
    assert storage["delete"] == {"enabled": True}
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["auth"]["htpasswd"]["realm"] == "r"
