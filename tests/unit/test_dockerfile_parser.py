"""The Dockerfile parser: directives, continuations, heredocs, forms, flags and stages."""

from __future__ import annotations

import textwrap

import pytest

from imagectl.lint.dockerfile import Dockerfile, parse_dockerfile, split_words


def parse(text: str) -> Dockerfile:
    return parse_dockerfile(textwrap.dedent(text))


def keywords(dockerfile: Dockerfile) -> list[tuple[str, int]]:
    return [(i.keyword, i.line) for i in dockerfile.instructions]


def messages(dockerfile: Dockerfile) -> list[tuple[int, str]]:
    return [(p.location.line, p.message) for p in dockerfile.problems]


def test_stages_instructions_and_line_numbers() -> None:
    dockerfile = parse(
        """\
        # a comment
        ARG BASE_IMAGE
        FROM ${BASE_IMAGE} AS Build
        RUN make

        from build as runtime
        copy --from=build /out /srv
        USER 10001
        """
    )
    assert dockerfile.problems == ()
    assert keywords(dockerfile) == [
        ("ARG", 2), ("FROM", 3), ("RUN", 4), ("FROM", 6), ("COPY", 7), ("USER", 8),
    ]  # fmt: skip
    assert [a.value for a in dockerfile.global_args] == ["BASE_IMAGE"]
    build, runtime = dockerfile.stages
    assert (build.index, build.name, build.base) == (0, "build", "${BASE_IMAGE}")
    assert (runtime.name, runtime.base) == ("runtime", "build")
    assert [i.keyword for i in runtime.instructions] == ["COPY", "USER"]
    assert dockerfile.parent(runtime) is build
    assert dockerfile.chain(runtime) == [build, runtime]
    assert dockerfile.final_stage() is runtime
    assert dockerfile.final_stage("BUILD") is build
    assert dockerfile.final_stage("missing") is None
    assert dockerfile.stage("0") is build


def test_from_with_platform_flag() -> None:
    stage = parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS builder\n").stages[0]
    assert (stage.base, stage.name) == ("golang:1.22", "builder")
    assert stage.from_.flag("platform") == ["$BUILDPLATFORM"]


def test_continuations_skip_comments_and_blank_lines_and_keep_the_first_line() -> None:
    dockerfile = parse(
        """\
        FROM scratch
        RUN apt-get update \\
          # a comment inside the continuation
          && apt-get install -y curl \\

          && echo done
        USER 1
        """
    )
    run = dockerfile.stages[0].instructions[0]
    assert (run.line, run.end_line) == (2, 6)
    assert "apt-get install -y curl" in run.value
    assert "comment" not in run.value
    assert run.value.endswith("&& echo done")
    assert keywords(dockerfile)[-1] == ("USER", 7)


def test_escape_directive_changes_the_continuation_character() -> None:
    dockerfile = parse(
        """\
        # escape=`
        FROM mcr.microsoft.com/windows/servercore
        COPY testfile.txt c:\\
        RUN dir c:\\ `
            && echo done
        """
    )
    assert dockerfile.escape == "`"
    assert dockerfile.directives == {"escape": "`"}
    copy, run = dockerfile.stages[0].instructions
    assert copy.value == "testfile.txt c:\\"
    assert copy.end_line == 3
    assert (run.line, run.end_line) == (4, 5)
    assert run.value.startswith("dir c:\\ ")


def test_directives_only_at_the_top() -> None:
    dockerfile = parse(
        """\
        # syntax=docker/dockerfile:1
        # unknown=directive
        # escape=`
        FROM scratch
        """
    )
    assert dockerfile.directives == {"syntax": "docker/dockerfile:1"}
    assert dockerfile.escape == "\\"


def test_invalid_escape_directive_is_a_problem() -> None:
    dockerfile = parse("# escape=x\nFROM scratch\n")
    assert dockerfile.escape == "\\"
    assert messages(dockerfile) == [(1, "invalid escape character 'x': use \\ or `")]


def test_heredoc_run_with_several_documents() -> None:
    dockerfile = parse(
        """\
        FROM scratch
        RUN <<EOF cat > /a && <<"X2" cat > /b
        apt-get update
        EOF
        echo $HOME
        X2
        USER 1
        """
    )
    run, user = dockerfile.stages[0].instructions
    assert (run.line, run.end_line) == (2, 6)
    assert [(d.name, d.body, d.quoted) for d in run.heredocs] == [
        ("EOF", "apt-get update", False),
        ("X2", "echo $HOME", True),
    ]
    assert "apt-get update" in run.script
    assert user.line == 7


def test_heredoc_copy_with_tab_stripping_and_quoted_delimiter() -> None:
    dockerfile = parse("FROM scratch\nCOPY <<-'EOF' /etc/motd\n\thello\n\t\tworld\n\tEOF\nUSER 1\n")
    copy = dockerfile.stages[0].instructions[0]
    assert copy.heredocs[0].body == "hello\nworld"  # `<<-` strips every leading tab
    assert copy.heredocs[0].strip_tabs and copy.heredocs[0].quoted
    assert copy.words == ["<<-EOF", "/etc/motd"]
    assert keywords(dockerfile)[-1] == ("USER", 6)


def test_heredoc_body_is_not_parsed_as_instructions() -> None:
    dockerfile = parse("FROM scratch\nRUN <<EOF\nFROM evil\n# not a comment\nEOF\n")
    assert len(dockerfile.stages) == 1
    assert dockerfile.stages[0].instructions[0].heredocs[0].body == "FROM evil\n# not a comment"


@pytest.mark.parametrize(
    "line", ['RUN echo "<<EOF"', "RUN cat << EOF", 'RUN ["sh", "-c", "<<EOF"]', "CMD cat <<EOF"]
)
def test_not_a_heredoc(line: str) -> None:
    instruction = parse(f"FROM scratch\n{line}\nUSER 1\n").stages[0].instructions[0]
    assert instruction.heredocs == ()


def test_unterminated_heredoc_is_a_problem() -> None:
    dockerfile = parse("FROM scratch\nRUN <<EOF\necho hi\n")
    assert messages(dockerfile) == [(2, "heredoc <<EOF is never terminated")]


def test_exec_and_shell_forms() -> None:
    dockerfile = parse(
        """\
        FROM scratch
        CMD ["app", "--port", "80"]
        ENTRYPOINT /app --serve
        RUN [not json]
        SHELL ["/bin/bash", "-c"]
        """
    )
    cmd, entrypoint, run, shell = dockerfile.stages[0].instructions
    assert cmd.exec_form and cmd.json_args == ("app", "--port", "80")
    assert not entrypoint.exec_form
    assert not run.exec_form and run.value == "[not json]"
    assert shell.json_args == ("/bin/bash", "-c")


def test_flags_repeat_and_unquote() -> None:
    run = parse(
        "FROM scratch\nRUN --mount=type=cache,target=/var/cache/apt --mount=type=secret,id=pip "
        '--network=none echo hi\nCOPY --chown="app:app" --link a b\n'
    ).stages[0]
    first, copy = run.instructions
    assert first.flag("mount") == ["type=cache,target=/var/cache/apt", "type=secret,id=pip"]
    assert first.flag("network") == ["none"]
    assert first.value == "echo hi"
    assert copy.flag("chown") == ["app:app"]
    assert copy.flag("link") == [""]
    assert copy.flag("from") == []


def test_comments_directly_above_an_instruction_are_kept() -> None:
    dockerfile = parse(
        """\
        FROM scratch
        # imagectl: ignore=IC203
        # second line
        ADD a /a

        # detached comment

        USER 1
        """
    )
    add, user = dockerfile.stages[0].instructions
    assert add.comments == ("imagectl: ignore=IC203", "second line")
    assert user.comments == ()


def test_problems_docker_would_refuse() -> None:
    dockerfile = parse("RUN echo early\nFROM a b c d\nBOGUS thing\n")
    assert messages(dockerfile) == [
        (1, "RUN before the first FROM"),
        (2, "FROM takes an image and an optional `AS name`"),
        (3, "unknown instruction 'BOGUS'"),
    ]
    assert messages(parse("# only a comment\n")) == [(1, "no FROM instruction")]


def test_crlf_and_byte_order_mark() -> None:
    dockerfile = parse_dockerfile("\ufeffFROM scratch\r\nRUN a \\\r\n  b\r\nUSER 1\r\n")
    assert keywords(dockerfile) == [("FROM", 1), ("RUN", 2), ("USER", 4)]
    assert dockerfile.stages[0].instructions[0].value == "a   b"


def test_problem_locations_name_the_file() -> None:
    dockerfile = parse_dockerfile("BOGUS\n", "images/base/Dockerfile")
    assert str(dockerfile.problems[0].location) == "images/base/Dockerfile:1"


def test_words() -> None:
    assert split_words('A=1 B="two words" C=it\\ is \'$NOT\'') == [
        "A=1", "B=two words", "C=it is", "$NOT",
    ]  # fmt: skip
    assert split_words('<<"EOF" x', keep_quotes=True) == ['<<"EOF"', "x"]
    assert split_words("a` b", "`") == ["a b"]
