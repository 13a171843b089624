"""When a rebase is safe: the image's own layers cannot depend on the base's content.

Pure: reads a Dockerfile's text, never the registry. The layer check (the old image
starts with exactly the old base's layers) is made at apply time by `publish`. A text
found safe is remembered (families share Dockerfiles: 500 images of the rebase
benchmark parse one text once, not 500 times).
"""

from __future__ import annotations

import functools
import re

from imagectl.lint.dockerfile import Dockerfile, Stage, parse_dockerfile

_BASE_ARG = re.compile(r"^\$(\{BASE_IMAGE\}|BASE_IMAGE)$")
_ALWAYS_UNSAFE = {"RUN": "runs a command on the base's filesystem"}


def is_base(image: str) -> bool:
    """Whether a FROM names the base by the build arg (``${BASE_IMAGE}``/``$BASE_IMAGE``)."""
    return bool(_BASE_ARG.match(image.strip()))


def depends_on_base(dockerfile: Dockerfile, stage: Stage) -> bool:
    """Whether a stage's filesystem derives from the base (directly or via earlier stages)."""
    return any(is_base(s.base) for s in dockerfile.chain(stage))


def _source_problem(dockerfile: Dockerfile, source: str, keyword: str, line: int) -> str | None:
    stage = dockerfile.stage(source)
    if stage is not None:
        if depends_on_base(dockerfile, stage):
            return f"line {line}: {keyword} --from={source} reads a stage built on the base"
        return None
    if is_base(source) or "$" in source:
        return f"line {line}: {keyword} --from={source} reads an image that may be the base"
    return None


def rebase_problem(text: str, target: str | None = None, name: str = "Dockerfile") -> str | None:
    """Why rebasing an image built from this Dockerfile is unsafe, or None when it is safe.

    Safe means: the final stage (or `target`) is ``FROM ${BASE_IMAGE}``, it has no RUN,
    and no COPY/ADD ``--from`` reads a stage or image that depends on the base.
    `name` (the file's path) only locates the problem in its message.
    """
    if _safe(text, target):
        return None
    return _problem(text, target, name)


@functools.lru_cache(maxsize=1024)
def _safe(text: str, target: str | None) -> bool:
    return _problem(text, target, "Dockerfile") is None


def _problem(text: str, target: str | None, name: str) -> str | None:
    dockerfile = parse_dockerfile(text, name)
    if dockerfile.problems:
        return f"{name} does not parse: {dockerfile.problems[0]}"
    final = dockerfile.final_stage(target)
    if final is None:
        return f"{name} has no stage {target!r}" if target else f"{name} has no FROM"
    if not is_base(final.base):
        return f"line {final.from_.line}: the final stage is FROM {final.base}, not ${{BASE_IMAGE}}"
    for instruction in final.instructions:
        why = _ALWAYS_UNSAFE.get(instruction.keyword)
        if why:
            return f"line {instruction.line}: {instruction.keyword} {why}"
        if instruction.keyword == "ONBUILD":
            return f"line {instruction.line}: ONBUILD changes what children build"
        if instruction.keyword in ("COPY", "ADD"):
            for source in instruction.flag("from"):
                problem = _source_problem(dockerfile, source, instruction.keyword, instruction.line)
                if problem:
                    return problem
    return None
