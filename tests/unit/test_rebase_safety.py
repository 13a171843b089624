"""Rebase safety rules (pure) and the method plan picks per action."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imagectl.errors import PlanError
from imagectl.lint.dockerfile import Dockerfile
from imagectl.manifest.models import Manifest
from imagectl.plan.model import Action, Observed, PlanOptions
from imagectl.plan.plan import make_plan
from imagectl.rebase import safety
from imagectl.rebase.safety import rebase_problem
from tests.unit.test_plan import FLEET, NOW, world_after_first_apply

COPY_ONLY = 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENV A=b\nCOPY app /srv/app\nCMD ["/srv/app"]\n'


@pytest.mark.parametrize(
    ("text", "target", "problem"),
    [
        (COPY_ONLY, None, None),
        ("ARG BASE_IMAGE\nFROM $BASE_IMAGE\nADD files.tar /srv/\n", None, None),
        (
            "FROM golang AS build\nRUN go build -o /app\nARG BASE_IMAGE\n"
            "FROM ${BASE_IMAGE}\nCOPY --from=build /app /app\n",
            None,
            None,
        ),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN apt-get update\n", None, "line 3: RUN"),
        ("FROM debian:12\nCOPY a /a\n", None, "line 1: the final stage is FROM debian:12"),
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS gen\nRUN make\nFROM ${BASE_IMAGE}\n"
            "COPY --from=gen /out /out\n",
            None,
            "line 5: COPY --from=gen reads a stage built on the base",
        ),
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY --from=${BASE_IMAGE} /etc/x /x\n",
            None,
            "reads an image that may be the base",
        ),
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS app\nCOPY a /a\nFROM scratch AS other\n",
            "app",
            None,
        ),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nONBUILD COPY . /\n", None, "line 3: ONBUILD"),
    ],
)
def test_rebase_problem(text: str, target: str | None, problem: str | None) -> None:
    found = rebase_problem(text, target)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_a_dockerfile_shared_by_many_images_is_parsed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    parse = safety.parse_dockerfile

    def counting(text: str, name: str = "Dockerfile") -> Dockerfile:
        parsed.append(name)
        return parse(text, name)

    monkeypatch.setattr(safety, "parse_dockerfile", counting)
    shared = COPY_ONLY + "# shared by the images of this test\n"
    assert [rebase_problem(shared, None, f"img{n}/Dockerfile") for n in range(50)] == [None] * 50
    assert len(parsed) == 1
    unsafe = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS app\nCOPY a /a\n# shared, unsafe\n"
    for n in range(3):  # each message names its own file
        assert rebase_problem(unsafe, "web", f"img{n}/Dockerfile") == (
            f"img{n}/Dockerfile has no stage 'web'"
        )


def _auto(update: str, problems: dict[str, str] | None = None) -> tuple[Manifest, Observed]:
    fleet = replace(FLEET, images={n: replace(i, update=update) for n, i in FLEET.images.items()})
    observed = replace(
        world_after_first_apply(),
        base_digests={"debian": "sha256:deb2"},
        rebase_problems=problems if problems is not None else dict.fromkeys(fleet.images, ""),
    )
    return fleet, observed


def test_a_base_only_change_is_rebased_and_says_why() -> None:
    fleet, observed = _auto("auto")
    plan = make_plan(fleet, observed, NOW)
    assert {a.image: a.method for a in plan.actions} == dict.fromkeys(
        ("base", "python", "api", "web"), "rebase"
    )
    base = plan.action("base")
    assert base is not None and base.old_digest == "sha256:1.4.0"
    assert base.old_base_digest == "sha256:deb1"
    assert "only the base moved" in base.why


def test_default_builds_and_other_reasons_build() -> None:
    fleet, observed = _auto("build")
    assert {a.method for a in make_plan(fleet, observed, NOW).actions} == {"build"}
    fleet, observed = _auto("auto")
    observed = replace(observed, inputs={**observed.inputs, "web": "changed"})
    plan = make_plan(fleet, observed, NOW, PlanOptions(force=frozenset({"api"})))
    web, api = plan.action("web"), plan.action("api")
    assert web is not None and web.method == "build" and "inputs-changed" in web.why
    assert api is not None and api.method == "build" and "forced" in api.why


def test_auto_builds_an_unsafe_dockerfile_and_rebase_refuses_it() -> None:
    problems = {"base": "", "python": "line 3: RUN runs a command", "api": "", "web": ""}
    fleet, observed = _auto("auto", problems)
    python = make_plan(fleet, observed, NOW).action("python")
    assert python is not None and python.method == "build"
    assert python.why == "not safe to rebase: line 3: RUN runs a command"
    fleet, observed = _auto("rebase", problems)
    with pytest.raises(PlanError, match=r"image 'python': update: rebase, but .* line 3: RUN"):
        make_plan(fleet, observed, NOW)


def test_saved_plan_keeps_the_method() -> None:
    fleet, observed = _auto("auto")
    action = make_plan(fleet, observed, NOW).actions[0]
    assert Action.from_saved(action.to_saved()) == action
    assert action.to_json()["method"] == "rebase"


def test_observed_default_has_no_rebase_checks() -> None:
    assert Observed(base_digests={}, built={}, inputs={}).rebase_problems == {}
