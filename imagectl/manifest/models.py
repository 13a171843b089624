"""The manifest as written by users (pydantic v2, unknown keys refused) and as resolved.

`RootFile`/`IncludedFile` mirror the YAML; `ImageConfig` is the effective
configuration of one image after inheritance defaults -> family -> image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from imagectl.errors import Location

BumpName = Literal["patch", "revision"]
BuilderName = Literal["docker", "buildah"]
NetworkName = Literal["default", "host", "none"]
UpdateName = Literal["build", "rebase", "auto"]

DEFAULT_TIMEOUT = 3600  # seconds a build may take when no `timeout` is set
DEFAULT_TAGS_PATCH: tuple[str, ...] = ("{version}", "{major}.{minor}", "{major}")
DEFAULT_TAGS_REVISION: tuple[str, ...] = ("{version}", "{upstream}", "{major}.{minor}", "{major}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_of(first: object, second: object, message: str) -> None:
    """Exactly one of two alternative fields is set (else `message`)."""
    if (first is None) == (second is None):
        raise ValueError(message)


class SecretModel(_Model):
    """A BuildKit secret: its id and where its value comes from (never a build arg)."""

    id: StrictStr = Field(description="Secret id, as in `RUN --mount=type=secret,id=...`.")
    env: StrictStr | None = Field(None, description="Environment variable holding the value.")
    file: StrictStr | None = Field(None, description="File holding the value.")

    @model_validator(mode="after")
    def _one_source(self) -> SecretModel:
        _one_of(self.env, self.file, "a secret needs exactly one of `env` or `file`")
        return self


class SignModel(_Model):
    """Sign what is published: a private key from a file or an environment variable."""

    key: StrictStr | None = Field(
        None, description="Private key file (cosign's encrypted key or PEM PKCS#8 ECDSA P-256)."
    )
    key_env: StrictStr | None = Field(
        None, description="Environment variable holding the private key's PEM text."
    )
    passphrase_env: StrictStr | None = Field(
        None, description="Environment variable holding the key's passphrase."
    )
    public_key: StrictStr | None = Field(
        None, description="PEM public key `imagectl verify` checks with (no private key needed)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SignModel:
        _one_of(self.key, self.key_env, "`sign` needs exactly one of `key` or `key_env`")
        return self


class VerifyModel(_Model):
    """Require the base's sigstore signature by this public key before building on it."""

    key: StrictStr = Field(description="PEM public key file (e.g. the vendor's cosign.pub).")


class LintModel(_Model):
    """Lint settings of an image or family."""

    ignore: list[StrictStr] = Field(default_factory=list, description="Rule ids to skip.")


class Settings(_Model):
    """Settings inherited defaults -> family -> image; None means 'not set here'."""

    registry: StrictStr | None = Field(None, description="Push prefix for these images.")
    tags: list[StrictStr] | None = Field(None, description="Tag templates; must hold {version}.")
    bump: BumpName | None = Field(None, description="patch (own versions) or revision.")
    rebuild: StrictStr | None = Field(None, description="Rebuild schedule (UTC).")
    builder: BuilderName | None = Field(None, description="docker or buildah.")
    platforms: list[StrictStr] | None = Field(None, description="Target platforms.")
    network: NetworkName | None = Field(None, description="Build network for RUN steps.")
    update: UpdateName | None = Field(
        None,
        description="After a base update: build (default), rebase when safe (auto), or rebase.",
    )
    timeout: StrictStr | None = Field(
        None, description='Build time limit, e.g. "90s", "45m", "1h30m" (default 1h).'
    )
    args: dict[str, StrictStr] | None = Field(None, description="Build args (merged).")
    labels: dict[str, StrictStr] | None = Field(None, description="Extra labels (merged).")
    allow_latest: bool | None = Field(None, description="Allow the mutable `latest` tag.")
    lint: LintModel | None = None
    sign: SignModel | None = Field(None, description="Sign and attest published images.")
    sbom: bool | None = Field(None, description="Attach a signed CycloneDX SBOM (trivy).")


class ImageModel(Settings):
    """One buildable image."""

    context: StrictStr = Field(description="Build context, relative to the manifest file.")
    dockerfile: StrictStr | None = Field(None, description="Dockerfile path inside context.")
    version: StrictStr = Field(description='Version line: "1.4" or "1.4.2" (quote it).')
    from_: StrictStr | None = Field(None, alias="from", description="Base: image, base key or ref.")
    target: StrictStr | None = Field(None, description="Multi-stage target.")
    secrets: list[SecretModel] | None = Field(None, description="BuildKit secrets.")


class FamilyModel(Settings):
    """A named group of images sharing defaults; not part of repository paths."""

    from_: StrictStr | None = Field(None, alias="from", description="Default base of the images.")
    images: dict[str, ImageModel] = Field(default_factory=dict)


class BaseSpec(_Model):
    """An external base followed by digest."""

    ref: StrictStr = Field(description="Reference by tag, optionally pinned @sha256:...")
    verify: VerifyModel | None = Field(None, description="Check the base's signature.")


class IncludedFile(_Model):
    """A file pulled in by `include`: families and bases."""

    include: list[StrictStr] = Field(default_factory=list)
    bases: dict[str, BaseSpec] = Field(default_factory=dict)
    families: dict[str, FamilyModel] = Field(default_factory=dict)


class RootFile(IncludedFile):
    """The root `imagectl.yaml`."""

    version: Literal[1] = Field(description="Schema version of this file format.")
    registry: StrictStr = Field(description="Push prefix: image NAME goes to <registry>/<NAME>.")
    defaults: Settings = Settings()


@dataclass(frozen=True)
class SecretRef:
    """A secret's id and source; the value is read only by the builder."""

    id: str
    env: str | None
    file: str | None


@dataclass(frozen=True)
class SignRef:
    """Where the signing key and its passphrase come from (values read only when signing)."""

    key: Path | None
    key_env: str | None
    passphrase_env: str | None
    public_key: Path | None = None


@dataclass(frozen=True)
class ImageConfig:
    """The effective configuration of one image."""

    name: str
    family: str
    registry: str
    context: Path
    dockerfile: Path
    version: str
    base: str  # an image name, a key of `bases`, or a literal reference
    bump: BumpName
    tags: tuple[str, ...]
    rebuild: str
    builder: BuilderName
    platforms: tuple[str, ...]
    network: NetworkName | None
    args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    target: str | None
    secrets: tuple[SecretRef, ...]
    allow_latest: bool
    lint_ignore: tuple[str, ...]
    location: Location
    timeout: int = DEFAULT_TIMEOUT  # seconds; the builder's processes are killed after it
    sign: SignRef | None = None  # sign and attest what is published
    sbom: bool = False  # attach a signed CycloneDX SBOM
    update: UpdateName = "build"  # how a base-only change is applied: build, rebase or auto

    @cached_property
    def repository(self) -> str:
        """``<registry>/<name>`` (computed once: plans read it several times per image)."""
        return f"{self.registry.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class BaseConfig:
    """An external base as declared (`bases:` key or a literal `from:` reference)."""

    name: str
    ref: str
    location: Location
    verify_key: Path | None = None  # PEM public key the base must be signed by


@dataclass(frozen=True)
class Manifest:
    """The whole resolved manifest."""

    root: Path  # the root manifest file
    files: tuple[Path, ...]  # every file read, root first
    images: dict[str, ImageConfig]
    bases: dict[str, BaseConfig]  # by name; literal refs are keyed by the ref itself

    @property
    def root_dir(self) -> Path:
        return self.root.parent

    @property
    def lock_path(self) -> Path:
        return self.root.parent / "imagectl.lock"

    def is_internal(self, base: str) -> bool:
        return base in self.images
