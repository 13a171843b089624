"""Property-based fuzzing of every registry JSON parser: whatever the bytes, the result
is a value or a RegistryError, never another exception (no traceback reaches a user).

Parsers: manifest, index (platform selection), image config (labels), tag list, catalog,
error body and token reply; each is fed arbitrary JSON, JSON of the right outer shape
with arbitrary members, deep nesting, and raw bytes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagectl.errors import RegistryError
from imagectl.registry import RegistryClient, StaticCredentials, parse_reference
from imagectl.registry.auth import parse_token
from imagectl.registry.manifests import OciManifest, image_config_from, select_platform
from imagectl.registry.session import server_message
from imagectl.textsafe import is_clean

REF = parse_reference("registry.test/acme/app:1")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = [
    "mediaType",
    "manifests",
    "config",
    "digest",
    "platform",
    "os",
    "architecture",
    "variant",
    "Labels",
    "tags",
    "repositories",
    "errors",
    "code",
    "message",
    "token",
    "access_token",
    "expires_in",
    "schemaVersion",
    "name",
]
shaped = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)
nested_shaped = st.recursive(
    shaped,
    lambda inner: st.dictionaries(
        st.sampled_from(KEYS), inner | st.lists(inner, max_size=3), max_size=4
    ),
    max_leaves=10,
)
documents = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    nested_shaped.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([10, 999, 1001, 100_000]).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([10, 100_000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def only_registry_errors(call: Any) -> Any:
    try:
        return call()
    except RegistryError as exc:
        return exc


@FUZZ
@given(documents, st.sampled_from(["", "application/vnd.oci.image.index.v1+json", "x\x1b/y"]))
def test_manifest_and_index_parsing(raw: bytes, media: str) -> None:
    manifest = only_registry_errors(lambda: OciManifest.from_bytes(raw, media))
    if isinstance(manifest, OciManifest):
        only_registry_errors(lambda: select_platform(manifest, "linux/amd64"))
        only_registry_errors(lambda: image_config_from(manifest, raw, None, "linux/amd64", "x"))


@FUZZ
@given(nested_shaped)
def test_image_config_labels_are_strings(config: dict[str, Any]) -> None:
    manifest = OciManifest.from_bytes(
        json.dumps({"config": {"digest": "sha256:" + "a" * 64}}).encode(), ""
    )
    got = only_registry_errors(
        lambda: image_config_from(manifest, json.dumps(config).encode(), None, "linux/amd64", "x")
    )
    if not isinstance(got, RegistryError):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in got.labels.items())


@FUZZ
@given(documents)
def test_token_replies(raw: bytes) -> None:
    got = only_registry_errors(lambda: parse_token(raw, "token server"))
    if not isinstance(got, RegistryError):
        token, ttl = got
        assert token.isascii() and token.isprintable() and " " not in token and 0 < ttl <= 86400


@FUZZ
@given(documents, st.integers(400, 599))
def test_error_bodies(raw: bytes, status: int) -> None:
    message = server_message(httpx.Response(status, content=raw))
    assert is_clean(message) and len(message) <= 300


def listing_client(raw: bytes) -> RegistryClient:
    handler = lambda request: httpx.Response(200, content=raw)  # noqa: E731
    return RegistryClient(credentials=StaticCredentials({}), transport=httpx.MockTransport(handler))


@FUZZ
@given(documents)
def test_tag_lists(raw: bytes) -> None:
    with listing_client(raw) as client:
        tags = only_registry_errors(lambda: client.list_tags(REF))
    if not isinstance(tags, RegistryError):
        assert all(isinstance(t, str) and is_clean(t) for t in tags)


@FUZZ
@given(documents)
def test_catalogs(raw: bytes) -> None:
    with listing_client(raw) as client:
        found = only_registry_errors(lambda: client.list_repositories(REF))
    if isinstance(found, set):
        assert all(isinstance(r, str) and is_clean(r) for r in found)


@FUZZ
@given(shaped.map(lambda d: {"tags": d.get("tags"), "repositories": d.get("repositories")}))
def test_listings_of_the_right_shape(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    with listing_client(raw) as client:
        only_registry_errors(lambda: client.list_tags(REF))
        only_registry_errors(lambda: client.list_repositories(REF))
