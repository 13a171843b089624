"""image_inputs_digest: the inputs digest with the parameters' JSON made once per set."""

from __future__ import annotations

import pytest

from imagectl.inputs import image_inputs_digest, image_params, inputs_digest
from imagectl.manifest.models import SecretRef
from tests.unit.test_plan import image

CONTEXT = "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("fields", "frontend"),
    [
        ({}, None),
        ({"args": (("LEVEL", "1"), ("A", 'ünï"code\\')), "target": "final"}, None),
        ({"platforms": ("linux/amd64", "linux/arm64"), "labels": (("x", "1"),)}, None),
        ({"secrets": (SecretRef("b", "B", None), SecretRef("a", None, "/f"))}, None),
        ({}, "docker/dockerfile:1@sha256:" + "f" * 64),
    ],
)
def test_same_digest_as_inputs_digest_of_image_params(
    fields: dict[str, object], frontend: str | None
) -> None:
    config = image("app", "debian", "1.0", **fields)
    expected = inputs_digest(CONTEXT, image_params(config, frontend))
    assert image_inputs_digest(CONTEXT, config, frontend) == expected
    assert image_inputs_digest(CONTEXT, config, frontend) == expected  # memoized: same
    assert image_inputs_digest("sha256:" + "d" * 64, config, frontend) != expected


def test_different_parameters_give_different_digests() -> None:
    one = image("app", "debian", "1.0", args=(("LEVEL", "1"),))
    two = image("app", "debian", "1.0", args=(("LEVEL", "2"),))
    assert image_inputs_digest(CONTEXT, one, None) != image_inputs_digest(CONTEXT, two, None)
