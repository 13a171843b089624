from __future__ import annotations

import pytest

from imagectl.domain.versions import (
    Bump,
    VersionLoweredError,
    check_declared,
    next_version,
    version_changed,
    version_fields,
    version_key,
)
from imagectl.errors import PlanError

P = Bump.PATCH
R = Bump.REVISION


def test_bump_values() -> None:
    assert Bump("patch") is Bump.PATCH
    assert Bump("revision") is Bump.REVISION
    assert str(Bump.REVISION) == "revision"


@pytest.mark.parametrize(
    ("declared", "bump"),
    [
        ("1.4", P),
        ("1.4.2", P),
        ("0.0", P),
        ("0.0.0", P),
        ("10.20.30", P),
        ("3.12.7", R),
        ("0.1.0", R),
    ],
)
def test_check_declared_accepts(declared: str, bump: Bump) -> None:
    assert check_declared(declared, bump) is None


@pytest.mark.parametrize(
    ("declared", "bump"),
    [
        ("1", P),
        ("1.4.2.3", P),
        ("01.4", P),
        ("1.04", P),
        ("1.4.02", P),
        ("1.4.", P),
        ("v1.4", P),
        (" 1.4", P),
        ("1.4\n", P),
        ("-1.4", P),
        ("1.4.2-rc1", P),
        ("1.4.2-r1", P),
        ("1.4.2+build", P),
        ("", P),
        ("latest", P),
        ("3.12", R),
        ("3", R),
        ("3.12.7-r1", R),
        ("3.12.07", R),
        ("3.12.7+b", R),
    ],
)
def test_check_declared_refuses(declared: str, bump: Bump) -> None:
    message = check_declared(declared, bump)
    assert message is not None
    assert repr(declared) in message
    assert str(bump) in message


def test_check_declared_messages_show_expected_form() -> None:
    assert "X.Y or X.Y.Z" in (check_declared("1", P) or "")
    assert "X.Y.Z" in (check_declared("3.12", R) or "")


@pytest.mark.parametrize(
    ("declared", "bump", "built", "expected"),
    [
        # patch, X.Y line
        ("1.4", P, None, "1.4.0"),
        ("1.4", P, "1.4.0", "1.4.1"),
        ("1.4", P, "1.4.1", "1.4.2"),
        ("1.4", P, "1.4.9", "1.4.10"),
        ("1.4", P, "1.4.10", "1.4.11"),
        ("0.0", P, None, "0.0.0"),
        # patch, X.Y.Z floor
        ("1.4.2", P, None, "1.4.2"),
        ("1.4.2", P, "1.4.2", "1.4.3"),
        ("1.4.2", P, "1.4.5", "1.4.6"),
        ("1.4.7", P, "1.4.5", "1.4.7"),
        ("1.4.6", P, "1.4.5", "1.4.6"),
        ("1.4.0", P, "1.4.0", "1.4.1"),
        # raising the line
        ("1.5", P, "1.4.9", "1.5.0"),
        ("1.5", P, "1.4.0", "1.5.0"),
        ("2.0", P, "1.9.9", "2.0.0"),
        ("1.10", P, "1.9.3", "1.10.0"),
        ("1.5.3", P, "1.4.9", "1.5.3"),
        # line declared X.Y after a floor X.Y.Z build continues
        ("1.4", P, "1.4.7", "1.4.8"),
        # built with a revision before switching to patch: the patch goes on
        ("1.4", P, "1.4.5-r2", "1.4.6"),
        # revision
        ("3.12.7", R, None, "3.12.7-r0"),
        ("3.12.7", R, "3.12.7-r0", "3.12.7-r1"),
        ("3.12.7", R, "3.12.7-r1", "3.12.7-r2"),
        ("3.12.7", R, "3.12.7-r9", "3.12.7-r10"),
        # revision restarts when the upstream changes
        ("3.12.8", R, "3.12.7-r5", "3.12.8-r0"),
        ("3.13.0", R, "3.12.7-r5", "3.13.0-r0"),
        ("4.0.0", R, "3.12.7-r5", "4.0.0-r0"),
        # built without a revision before switching to revision: start at r0
        ("3.12.7", R, "3.12.7", "3.12.7-r0"),
    ],
)
def test_next_version(declared: str, bump: Bump, built: str | None, expected: str) -> None:
    assert next_version(declared, bump, built) == expected


@pytest.mark.parametrize(
    ("declared", "bump", "built"),
    [
        ("1.3", P, "1.4.3"),
        ("1.3.9", P, "1.4.0"),
        ("0.9", P, "1.0.0"),
        ("1.4", P, "1.10.0"),
        ("1.9", P, "2.0.0"),
        ("3.12.6", R, "3.12.7-r0"),
        ("3.11.9", R, "3.12.7-r3"),
        ("3.12.7", R, "3.12.10-r0"),
    ],
)
def test_next_version_lowered(declared: str, bump: Bump, built: str) -> None:
    with pytest.raises(VersionLoweredError) as info:
        next_version(declared, bump, built)
    assert isinstance(info.value, PlanError)
    assert str(info.value) == (
        f"declared version {declared} is lower than the built version {built}"
    )
    assert info.value.declared == declared
    assert info.value.built == built


def test_lowered_error_text_example() -> None:
    with pytest.raises(
        PlanError, match=r"^declared version 1\.3 is lower than the built version 1\.4\.3$"
    ):
        next_version("1.3", P, "1.4.3")


@pytest.mark.parametrize(
    "built", ["garbage", "1.4", "1.4.3-rc1", "1.4.3-r01", "1.4.3+b", "1.4.3-r1.2", ""]
)
def test_next_version_unparsable_built(built: str) -> None:
    with pytest.raises(PlanError, match=r"built version .* cannot be parsed") as info:
        next_version("1.4", P, built)
    assert not isinstance(info.value, VersionLoweredError)
    assert repr(built) in str(info.value)


@pytest.mark.parametrize(("declared", "bump"), [("1", P), ("3.12", R), ("x", P)])
def test_next_version_invalid_declared(declared: str, bump: Bump) -> None:
    with pytest.raises(PlanError, match="not valid for bump"):
        next_version(declared, bump, None)


@pytest.mark.parametrize(
    ("declared", "bump", "built", "expected"),
    [
        ("1.4", P, None, False),
        ("3.12.7", R, None, False),
        ("1.4", P, "1.4.0", False),
        ("1.4", P, "1.4.9", False),
        ("1.5", P, "1.4.9", True),
        ("2.0", P, "1.4.9", True),
        ("1.3", P, "1.4.9", True),  # differs (next_version refuses it)
        ("1.4.2", P, "1.4.2", False),
        ("1.4.2", P, "1.4.5", False),  # the floor is below what was built
        ("1.4.7", P, "1.4.5", True),
        ("1.5.0", P, "1.4.5", True),
        ("1.4", P, "1.4.5-r1", False),
        ("3.12.7", R, "3.12.7-r0", False),
        ("3.12.7", R, "3.12.7-r9", False),
        ("3.12.8", R, "3.12.7-r9", True),
        ("3.12.6", R, "3.12.7-r9", True),
    ],
)
def test_version_changed(declared: str, bump: Bump, built: str | None, expected: bool) -> None:
    assert version_changed(declared, bump, built) is expected


def test_version_changed_agrees_with_next_version_after_first_build() -> None:
    built = next_version("1.4", P, None)
    assert version_changed("1.4", P, built) is False
    built = next_version("3.12.7", R, None)
    assert version_changed("3.12.7", R, built) is False


def test_version_changed_unparsable_built() -> None:
    with pytest.raises(PlanError, match="cannot be parsed"):
        version_changed("1.4", P, "nope")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "1.4.3",
            {
                "version": "1.4.3",
                "upstream": "1.4.3",
                "major": "1",
                "minor": "4",
                "patch": "3",
                "revision": "",
            },
        ),
        (
            "3.12.7-r2",
            {
                "version": "3.12.7-r2",
                "upstream": "3.12.7",
                "major": "3",
                "minor": "12",
                "patch": "7",
                "revision": "2",
            },
        ),
        (
            "0.0.0-r0",
            {
                "version": "0.0.0-r0",
                "upstream": "0.0.0",
                "major": "0",
                "minor": "0",
                "patch": "0",
                "revision": "0",
            },
        ),
    ],
)
def test_version_fields(version: str, expected: dict[str, str]) -> None:
    assert version_fields(version) == expected


@pytest.mark.parametrize("version", ["1.4", "x", "1.4.3-beta"])
def test_version_fields_invalid(version: str) -> None:
    with pytest.raises(PlanError):
        version_fields(version)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.4.9", "1.4.10"),
        ("1.4.3", "1.4.10"),
        ("1.9.0", "1.10.0"),
        ("1.99.99", "2.0.0"),
        ("3.12.7-r2", "3.12.7-r10"),
        ("3.12.7-r10", "3.12.8-r0"),
        ("3.12.7-r99", "3.13.0-r0"),
        ("3.12.7", "3.12.7-r0"),  # no revision sorts as -1
        ("3.12.6-r5", "3.12.7"),
    ],
)
def test_version_key_order(lower: str, higher: str) -> None:
    assert version_key(lower) < version_key(higher)


def test_version_key_values() -> None:
    assert version_key("1.4.3") == (1, 4, 3, -1)
    assert version_key("3.12.7-r2") == (3, 12, 7, 2)


def test_version_key_sorts_a_list() -> None:
    versions = ["1.4.10", "1.4.9", "1.4.2", "1.10.0", "1.4.9-r0", "0.9.99"]
    assert sorted(versions, key=version_key) == [
        "0.9.99",
        "1.4.2",
        "1.4.9",
        "1.4.9-r0",
        "1.4.10",
        "1.10.0",
    ]


def test_version_key_invalid() -> None:
    with pytest.raises(PlanError, match="cannot be parsed"):
        version_key("1.4.x")
