"""The manifest loader: one test per error kind, each with its exact location and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imagectl.errors import ManifestError, Problem
from imagectl.manifest.loader import load_manifest

ROOT = """\
version: 1
registry: localhost:5000/acme
bases:
  debian:
    ref: docker.io/library/debian:bookworm-slim
families:
  runtime:
    from: debian
    images:
      base:
        context: base
        version: "1.4"
"""


def write(tmp: Path, files: dict[str, str], contexts: tuple[str, ...] = ("base",)) -> Path:
    for ctx in contexts:
        (tmp / ctx).mkdir(parents=True, exist_ok=True)
        (tmp / ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp / "imagectl.yaml"


def problems(path: Path) -> list[Problem]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value.problems


def only(path: Path) -> Problem:
    found = problems(path)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def where(problem: Problem) -> tuple[str, int, int, str]:
    loc = problem.location
    return (loc.file, loc.line, loc.col, problem.key_path)


def test_valid_manifest_resolves_effective_config(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "imagectl.yaml": ROOT.replace(
                "families:",
                "defaults:\n  rebuild: weekly\n  labels: {a: '1', b: '1'}\n"
                "  network: host\nfamilies:",
            ).replace(
                '        version: "1.4"\n',
                '        version: "1.4"\n        labels: {b: "2"}\n'
                "      python:\n        from: base\n        context: py\n"
                '        version: "3.12.7"\n        bump: revision\n        rebuild: daily\n',
            )
        },
        contexts=("base", "py"),
    )
    manifest = load_manifest(root)
    base, python = manifest.images["base"], manifest.images["python"]
    assert base.base == "debian" and python.base == "base"
    assert base.rebuild == "weekly" and python.rebuild == "daily"
    assert base.labels == (("a", "1"), ("b", "2"))
    assert base.network == "host"
    assert base.tags == ("{version}", "{major}.{minor}", "{major}")
    assert python.tags == ("{version}", "{upstream}", "{major}.{minor}", "{major}")
    assert base.repository == "localhost:5000/acme/base"
    assert base.dockerfile == tmp_path / "base" / "Dockerfile"
    assert manifest.bases["debian"].ref == "docker.io/library/debian:bookworm-slim"
    assert manifest.lock_path == tmp_path / "imagectl.lock"


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": "version: 1\nregistry: [unclosed\n"})
    problem = only(root)
    assert problem.location.file == "imagectl.yaml"
    assert problem.location.line == 3
    assert "YAML syntax error" in problem.message


def test_duplicate_key_is_located(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT + "registry: again\n"})
    problem = only(root)
    assert (problem.location.file, problem.location.line) == ("imagectl.yaml", 13)
    assert "duplicate key" in problem.message


def test_unknown_key_suggests_the_close_name(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace("context: base", "contxt: base")})
    found = problems(root)
    typo = next(p for p in found if "unknown key" in p.message)
    assert where(typo) == ("imagectl.yaml", 11, 9, "families.runtime.images.base.contxt")
    assert typo.hint == "did you mean 'context'?"
    assert any("missing required key 'context'" in p.message for p in found)


def test_unquoted_version_number_gets_a_hint(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace('version: "1.4"', "version: 1.10")})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 12, 18, "families.runtime.images.base.version")
    assert "got the number 1.1" in problem.message and "quote it" in problem.hint


def test_duplicate_image_across_files(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "imagectl.yaml": ROOT.replace("bases:", "include: [families/*.yaml]\nbases:"),
            "families/more.yaml": """\
                families:
                  other:
                    from: debian
                    images:
                      base:
                        context: ../base
                        version: "2.0"
            """,
        },
    )
    problem = only(root)
    assert where(problem) == ("families/more.yaml", 5, 7, "families.other.images.base")
    assert "also defined at imagectl.yaml:11:7" in problem.message


def test_unknown_from_name_with_suggestion(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace("from: debian", "from: debain")})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 8, 11, "families.runtime.from")
    assert problem.message == "unknown base 'debain'"
    assert problem.hint == "did you mean 'debian'?"


def test_cycle_is_spelled_out(tmp_path: Path) -> None:
    text = ROOT + (
        "      a:\n        from: b\n        context: base\n        version: '1.0'\n"
        "      b:\n        from: a\n        context: base\n        version: '1.0'\n"
    )
    root = write(tmp_path, {"imagectl.yaml": text})
    problem = only(root)
    assert problem.message == "dependency cycle: a -> b -> a"
    assert where(problem)[:3] == ("imagectl.yaml", 14, 15)


def test_missing_context_directory(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace("context: base", "context: nope")})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 11, 18, "families.runtime.images.base.context")
    assert problem.message == "context directory 'nope' does not exist"


def test_missing_dockerfile(tmp_path: Path) -> None:
    text = ROOT.replace("context: base", "context: base\n        dockerfile: Other.Dockerfile")
    root = write(tmp_path, {"imagectl.yaml": text})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 12, 21, "families.runtime.images.base.dockerfile")
    assert "base/Other.Dockerfile' does not exist" in problem.message


def test_context_outside_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "Dockerfile").write_text("FROM scratch\n")
    root = write(repo, {"imagectl.yaml": ROOT.replace("context: base", "context: ../outside")})
    problem = only(root)
    assert problem.key_path == "families.runtime.images.base.context"
    assert "outside the repository" in problem.message


def test_invalid_version(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace('"1.4"', '"1.x"')})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 12, 18, "families.runtime.images.base.version")


def test_revision_bump_needs_full_version(tmp_path: Path) -> None:
    text = ROOT.replace('version: "1.4"', 'version: "1.4"\n        bump: revision')
    problem = only(write(tmp_path, {"imagectl.yaml": text}))
    assert where(problem) == ("imagectl.yaml", 12, 18, "families.runtime.images.base.version")


def test_invalid_image_name(tmp_path: Path) -> None:
    root = write(tmp_path, {"imagectl.yaml": ROOT.replace("      base:", "      Base_:")})
    problem = only(root)
    assert where(problem) == ("imagectl.yaml", 10, 7, "families.runtime.images.Base_")
    assert "not a valid image name" in problem.message


@pytest.mark.parametrize(
    ("tags", "col", "fragment"),
    [
        ('["{major}"]', 9, 'must include "{version}"'),
        ('["{version}", "{nope}"]', 29, "unknown template field"),
        ('["{version}", "v{version}!"]', 29, "valid OCI tag"),
        ('["{version}", "latest"]', 29, "'latest' is not allowed (set allow_latest: true)"),
    ],
)
def test_tag_problems(tmp_path: Path, tags: str, col: int, fragment: str) -> None:
    text = ROOT.replace('version: "1.4"', f'version: "1.4"\n        tags: {tags}')
    problem = only(write(tmp_path, {"imagectl.yaml": text}))
    assert (problem.location.file, problem.location.line) == ("imagectl.yaml", 13)
    assert problem.location.col == col
    assert problem.key_path.startswith("families.runtime.images.base.tags")
    assert fragment in problem.message


def test_latest_allowed_when_asked(tmp_path: Path) -> None:
    text = ROOT.replace(
        'version: "1.4"',
        'version: "1.4"\n        allow_latest: true\n        tags: ["{version}", latest]',
    )
    manifest = load_manifest(write(tmp_path, {"imagectl.yaml": text}))
    assert manifest.images["base"].tags == ("{version}", "latest")


def test_schedule_that_does_not_parse(tmp_path: Path) -> None:
    text = ROOT.replace("    from: debian", "    from: debian\n    rebuild: fortnightly")
    problem = only(write(tmp_path, {"imagectl.yaml": text}))
    assert where(problem) == ("imagectl.yaml", 9, 14, "families.runtime.rebuild")


def test_invalid_base_reference(tmp_path: Path) -> None:
    text = ROOT.replace("docker.io/library/debian:bookworm-slim", "Docker.io/UPPER:tag")
    problem = only(write(tmp_path, {"imagectl.yaml": text}))
    assert where(problem) == ("imagectl.yaml", 5, 10, "bases.debian.ref")


def test_include_cycle_is_named(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "imagectl.yaml": ROOT.replace("bases:", "include: [a.yaml]\nbases:"),
            "a.yaml": "include: [b.yaml]\n",
            "b.yaml": "include: [a.yaml]\n",
        },
    )
    problem = only(root)
    assert where(problem) == ("b.yaml", 1, 11, "include[0]")
    assert problem.message == "include cycle: imagectl.yaml -> a.yaml -> b.yaml -> a.yaml"


def test_include_matching_nothing(tmp_path: Path) -> None:
    text = ROOT.replace("bases:", "include: [famlies/*.yaml]\nbases:")
    problem = only(write(tmp_path, {"imagectl.yaml": text}))
    assert where(problem) == ("imagectl.yaml", 3, 11, "include[0]")


def test_includes_sorted_and_loaded_once(tmp_path: Path) -> None:
    fam = (
        "families:\n  {0}:\n    from: debian\n    images:\n      {0}:\n"
        '        context: ../base\n        version: "1.0"\n'
    )
    root = write(
        tmp_path,
        {
            "imagectl.yaml": ROOT.replace("bases:", 'include: ["f/*.yaml", "f/b.yaml"]\nbases:'),
            "f/b.yaml": fam.format("bee"),
            "f/a.yaml": fam.format("ant"),
        },
    )
    manifest = load_manifest(root)
    assert [p.name for p in manifest.files] == ["imagectl.yaml", "a.yaml", "b.yaml"]
    assert sorted(manifest.images) == ["ant", "base", "bee"]


def test_all_errors_are_reported_sorted(tmp_path: Path) -> None:
    text = ROOT.replace("context: base", "context: nope").replace("from: debian", "from: x")
    text = text.replace(
        "registry: localhost:5000/acme", "registry: localhost:5000/acme\ncolour: red"
    )
    found = problems(write(tmp_path, {"imagectl.yaml": text}))
    assert [p.location.line for p in found] == sorted(p.location.line for p in found)
    assert len(found) >= 1 and "unknown key 'colour'" in found[0].message


def test_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "imagectl.yaml"
    root.write_bytes(b"version: 1\nregistry: \xff\xfe\n")
    problem = only(root)
    assert (problem.location.line, problem.location.col) == (2, 11)
    assert "UTF-8" in problem.message


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    root = tmp_path / "imagectl.yaml"
    root.write_text("\n".join(lines) + "\n")
    problem = only(root)
    assert "too large" in problem.message
