from __future__ import annotations

import pytest

from imagectl.domain.tags import (
    FIELDS,
    RenderedTag,
    TagContext,
    TagError,
    check_template,
    check_template_list,
    may_move_floating,
    render_tags,
)
from imagectl.errors import PlanError

CTX = TagContext(version="1.4.3", date="20260301", sha="a1b2c3d", base_tag="bookworm-slim")
REV = TagContext(version="3.12.7-r2", date="20260301", sha="a1b2c3d", base_tag="bookworm-slim")


@pytest.mark.parametrize(
    "template",
    [
        "{version}",
        "{upstream}",
        "{major}",
        "{major}.{minor}",
        "{major}.{minor}.{patch}",
        "{upstream}-r{revision}",
        "{version}-bookworm",
        "{version}-{base_tag}",
        "{version}-{date}",
        "sha-{sha}",
        "{date}.{sha}",
        "stable",
        "latest",  # refused per list by check_template_list, not here
        "_x",
        "v{major}",
        "a" * 128,
    ],
)
def test_check_template_accepts(template: str) -> None:
    assert check_template(template) == []


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{foo}", "unknown template field {foo}; known: {version}, {upstream}"),
        ("{Version}", "unknown template field {Version}"),
        ("{version}-{os}", "unknown template field {os}"),
        ("{}", "unknown template field {}"),
        ("{0}", "unknown template field {0}"),
        ("{version.x}", "unknown template field {version.x}"),
        ("{version[0]}", "unknown template field {version[0]}"),
        ("{version", "malformed braces"),
        ("version}", "malformed braces"),
        ("{ver{sion}}", "malformed braces"),
        ("{version:>10}", "format specs are not supported"),
        ("{version!r}", "format specs are not supported"),
        ("", "does not render a valid OCI tag"),
        ("-{version}", "does not render a valid OCI tag"),
        (".{version}", "does not render a valid OCI tag"),
        ("{version}+build", "does not render a valid OCI tag"),
        ("{version}/x", "does not render a valid OCI tag"),
        ("{version} x", "does not render a valid OCI tag"),
        ("{{version}}", "does not render a valid OCI tag"),
        ("a" * 129, "does not render a valid OCI tag"),
        ("x" * 120 + "{version}", "does not render a valid OCI tag"),
    ],
)
def test_check_template_refuses(template: str, fragment: str) -> None:
    errors = check_template(template)
    assert len(errors) >= 1
    assert fragment in errors[0]


def test_check_template_lists_every_known_field() -> None:
    (message,) = check_template("{nope}")
    for name in FIELDS:
        assert f"{{{name}}}" in message


def test_check_template_reports_each_unknown_field() -> None:
    errors = check_template("{a}-{b}")
    assert [e.split(";")[0] for e in errors] == [
        "unknown template field {a}",
        "unknown template field {b}",
    ]


@pytest.mark.parametrize(
    ("templates", "allow_latest", "expected"),
    [
        (["{version}"], False, []),
        (["{version}", "{major}.{minor}", "{major}"], False, []),
        (["{major}", "{version}"], False, []),
        (["{version}", "latest"], True, []),
        (
            ["{version}", "{major}", "latest"],
            False,
            [(2, "'latest' is not allowed (set allow_latest: true)")],
        ),
        ([], False, [(None, 'tags must include "{version}" (the immutable tag)')]),
        (
            ["{major}.{minor}", "{version}-bookworm"],
            False,
            [(None, 'tags must include "{version}" (the immutable tag)')],
        ),
        (
            ["{version}", "{major}", "{major}"],
            False,
            [(2, "duplicate tag template '{major}' (also at index 1)")],
        ),
        (
            ["{version}", "{version}"],
            False,
            [(1, "duplicate tag template '{version}' (also at index 0)")],
        ),
        (
            ["latest", "{major}", "latest"],
            False,
            [
                (0, "'latest' is not allowed (set allow_latest: true)"),
                (2, "duplicate tag template 'latest' (also at index 0)"),
                (None, 'tags must include "{version}" (the immutable tag)'),
            ],
        ),
    ],
)
def test_check_template_list(
    templates: list[str], allow_latest: bool, expected: list[tuple[int | None, str]]
) -> None:
    assert check_template_list(templates, allow_latest) == expected


def test_check_template_list_accepts_tuple() -> None:
    assert check_template_list(("{version}", "{major}"), allow_latest=False) == []


def _names(tags: list[RenderedTag]) -> list[str]:
    return [t.name for t in tags]


@pytest.mark.parametrize(
    ("templates", "ctx", "expected"),
    [
        (["{version}", "{major}.{minor}", "{major}"], CTX, ["1.4.3", "1.4", "1"]),
        (["{version}", "{upstream}", "{major}.{minor}"], REV, ["3.12.7-r2", "3.12.7", "3.12"]),
        (["{version}", "{upstream}-r{revision}"], REV, ["3.12.7-r2"]),
        (["{version}-{base_tag}", "{version}"], CTX, ["1.4.3-bookworm-slim", "1.4.3"]),
        (["{version}", "{date}", "sha-{sha}"], CTX, ["1.4.3", "20260301", "sha-a1b2c3d"]),
        (["{version}", "{major}.{minor}.{patch}"], REV, ["3.12.7-r2", "3.12.7"]),
        (["{version}", "stable"], CTX, ["1.4.3", "stable"]),
        # {upstream} of a patch version equals {version}: kept once
        (["{version}", "{upstream}", "{major}"], CTX, ["1.4.3", "1"]),
        # duplicates that only appear after rendering
        (["{version}", "{major}", "{major}.{minor}", "{major}"], CTX, ["1.4.3", "1", "1.4"]),
    ],
)
def test_render_tags_names(templates: list[str], ctx: TagContext, expected: list[str]) -> None:
    assert _names(render_tags(templates, ctx)) == expected


def test_render_tags_marks_only_version_immutable() -> None:
    tags = render_tags(["{major}", "{version}", "{major}.{minor}"], CTX)
    assert tags == [
        RenderedTag("1", immutable=False),
        RenderedTag("1.4.3", immutable=True),
        RenderedTag("1.4", immutable=False),
    ]


def test_render_tags_duplicate_of_immutable_rendered_first_is_immutable() -> None:
    # {upstream} renders the immutable name before {version} does: one tag, immutable
    tags = render_tags(["{upstream}", "{version}", "{major}"], CTX)
    assert tags == [RenderedTag("1.4.3", immutable=True), RenderedTag("1", immutable=False)]


def test_render_tags_revision_upstream_is_floating() -> None:
    tags = render_tags(["{version}", "{upstream}"], REV)
    assert [t.immutable for t in tags] == [True, False]


@pytest.mark.parametrize(
    ("templates", "ctx", "fragments"),
    [
        (
            ["{version}", "{sha}"],
            TagContext("1.4.3", "20260301", "", "x"),
            ["'{sha}'", "{sha} is empty", "git"],
        ),
        (
            ["{version}", "{version}-{sha}"],
            TagContext("1.4.3", "20260301", "", "x"),
            ["'{version}-{sha}'", "{sha} is empty"],
        ),
        (
            ["{version}", "{base_tag}"],
            TagContext("1.4.3", "20260301", "abc", ""),
            ["'{base_tag}'", "{base_tag} is empty", "digest"],
        ),
        (
            ["{version}", "{revision}"],
            CTX,
            ["'{revision}'", "{revision} is empty", "bump: patch"],
        ),
        (["{version}", "-{major}"], CTX, ["'-{major}'", "'-1'", "not a valid OCI tag"]),
        (["{version}", "{foo}"], CTX, ["unknown template field {foo}"]),
        (["{version}", "{version"], CTX, ["malformed braces"]),
        (["{major}", "{major}.{minor}"], CTX, ['tags must include "{version}"']),
    ],
)
def test_render_tags_errors(templates: list[str], ctx: TagContext, fragments: list[str]) -> None:
    with pytest.raises(TagError) as info:
        render_tags(templates, ctx)
    assert isinstance(info.value, PlanError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_render_tags_too_long_tag() -> None:
    with pytest.raises(TagError, match="not a valid OCI tag"):
        render_tags(["{version}", "x" * 126 + "{major}.{minor}"], CTX)


def test_render_tags_bad_version() -> None:
    with pytest.raises(PlanError):
        render_tags(["{version}"], TagContext("1.4", "20260301", "", ""))


@pytest.mark.parametrize(
    ("new", "holder", "expected"),
    [
        ("1.4.3", None, True),
        ("1.4.3", "1.4.2", True),
        ("1.4.3", "1.4.3", True),
        ("1.4.10", "1.4.9", True),
        ("1.4.9", "1.4.10", False),
        ("1.3.9", "1.4.2", False),
        ("2.0.0", "1.99.99", True),
        ("3.12.7-r10", "3.12.7-r2", True),
        ("3.12.7-r2", "3.12.7-r10", False),
        ("3.12.7-r0", "3.12.8-r0", False),
        ("3.12.8-r0", "3.12.7-r9", True),
        ("3.12.7-r0", "3.12.7", True),
        ("3.12.7", "3.12.7-r0", False),
    ],
)
def test_may_move_floating(new: str, holder: str | None, expected: bool) -> None:
    assert may_move_floating(new, holder) is expected


@pytest.mark.parametrize(
    ("template", "ctx"),
    [
        ("sha-{sha}", TagContext("1.4.3", "20260301", "", "x")),
        ("{upstream}-r{revision}", CTX),
        ("{version}-{base_tag}", TagContext("1.4.3", "20260301", "abc", "")),
        ("{date}-{sha}-{sha}", TagContext("1.4.3", "", "", "x")),
    ],
)
def test_render_tags_refuses_empty_fields_even_when_valid_oci(
    template: str, ctx: TagContext
) -> None:
    with pytest.raises(TagError) as info:
        render_tags(["{version}", template], ctx)
    assert str(info.value).startswith(f"tag template {template!r} cannot be rendered: ")
    assert str(info.value).count("{sha} is empty") <= 1
