"""Best-practice rules over one Dockerfile, as built for one image (IC2xx).

The final stage is the `target` stage when the image sets one, else the last. Rules
about what the image ships (USER, HEALTHCHECK, apt lists, CMD) look at the final
stage and the stages it is built FROM; rules about what must never be written
(secrets, ADD) look at every stage.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from imagectl.lint.dockerfile import Dockerfile, Instruction, Stage
from imagectl.lint.findings import Finding, register

SYNTAX = register("IC200", "error", "the Dockerfile cannot be built", "fix the syntax error")
NO_USER = register(
    "IC201", "warning", "no USER in the final stage: the container runs as root",
    "create an unprivileged user and end the final stage with `USER <name or uid>`",
)  # fmt: skip
ROOT_USER = register(
    "IC202", "error", "the last USER is root: the container runs as root",
    "switch back to an unprivileged user (`USER 10001`) after the steps that need root",
)  # fmt: skip
ADD_LOCAL = register(
    "IC203", "warning", "ADD of local files",
    "use COPY; keep ADD for a local tar archive that must be extracted",
)  # fmt: skip
ADD_URL = register(
    "IC204", "warning", "ADD of a URL downloads it unverified on every build",
    "add `--checksum=sha256:…`, or download in a RUN and verify the checksum",
)  # fmt: skip
APT_LISTS = register(
    "IC205", "warning", "apt-get update without `rm -rf /var/lib/apt/lists/*` in the same RUN",
    "end the same RUN with `&& rm -rf /var/lib/apt/lists/*` (a later RUN cannot shrink it)",
)  # fmt: skip
UPGRADE = register(
    "IC206", "warning", "package upgrade in a derived image",
    "remove it: upgrades belong in the base image, which imagectl rebuilds when it moves",
)  # fmt: skip
SECRET = register(
    "IC207", "error", "a secret in ENV/ARG/LABEL stays in the image and its history",
    "use a BuildKit secret (secrets: in the manifest, RUN --mount=type=secret)",
)  # fmt: skip
SHELL_FORM = register(
    "IC208", "warning", "shell-form ENTRYPOINT/CMD: /bin/sh is PID 1 and swallows signals",
    'use the exec form: CMD ["executable", "arg"]',
)  # fmt: skip
NO_HEALTHCHECK = register(
    "IC209", "warning", "a service image (EXPOSE) without HEALTHCHECK",
    "add `HEALTHCHECK CMD [...]`, or `HEALTHCHECK NONE` to opt out explicitly",
)  # fmt: skip
NOT_BASE_IMAGE = register(
    "IC210", "error", "the image is not built FROM ${BASE_IMAGE}",
    "start the Dockerfile with `ARG BASE_IMAGE` and `FROM ${BASE_IMAGE}`",
)  # fmt: skip
NO_BASE_ARG = register(
    "IC211", "error", "FROM ${BASE_IMAGE} without `ARG BASE_IMAGE` before the first FROM",
    "declare `ARG BASE_IMAGE` before the first FROM",
)  # fmt: skip
UNFOLLOWED = register(
    "IC212", "warning", "a stage is built FROM an image imagectl does not follow",
    "pin it by digest (image:tag@sha256:…) or build the stage FROM ${BASE_IMAGE}",
)  # fmt: skip

UNPINNED_FRONTEND = register(
    "IC213", "error", "`# syntax=` names a remote frontend that is not pinned by digest",
    "pin it: `# syntax=docker/dockerfile:1@sha256:…`; imagectl records the digest it builds with",
)  # fmt: skip

_BASE_RE = re.compile(r"\$(?:BASE_IMAGE|\{BASE_IMAGE(?:[:?+-][^}]*)?\})")
_APT = r"\bapt(?:-get)?(?:\s+-{1,2}[\w=.:/-]+)*\s+"
_UPDATE_RE = re.compile(_APT + r"update\b")
_UPGRADE_RE = re.compile(_APT + r"(?:upgrade|dist-upgrade|full-upgrade)\b|\bapk\s+upgrade\b")
_CLEAN_RE = re.compile(r"\brm\b[^;&|\n]*/var/lib/apt/lists")
_URL_RE = re.compile(r"(?:https?|ftp)://|git@", re.IGNORECASE)
_TAR_RE = re.compile(r"\.(?:tar(?:\.(?:gz|bz2|xz|zst|lzma|Z))?|tgz|tbz2?|txz|tzst)$", re.I)
_SECRET_WORDS = {"PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "SECRET", "TOKEN", "APIKEY"}
_SECRET_WORDS |= {"CREDENTIAL", "CREDENTIALS"}
_SECRET_PAIRS = {("API", "KEY"), ("PRIVATE", "KEY"), ("ACCESS", "KEY"), ("SIGNING", "KEY")}
_SECRET_PAIRS |= {("ENCRYPTION", "KEY"), ("SECRET", "KEY")}
_NOT_SECRET_LAST = {"FILE", "PATH", "DIR", "URL", "ENDPOINT", "NAME", "ID", "TYPE", "LENGTH"}
_SECRET_VALUE_RE = re.compile(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY|ghp_\w{36}")


@dataclass(frozen=True)
class Inherited:
    """What an image inherits from its base: the last USER (None: never set) and HEALTHCHECK."""

    user: str | None
    healthcheck: bool


@dataclass(frozen=True)
class DockerfileTarget:
    """One Dockerfile as one image builds it.

    Attributes:
        path: the Dockerfile's path, as shown in findings.
        dockerfile: the parsed Dockerfile.
        target: the image's `target:` stage, if any.
        base_image: the manifest image it is built on (a derived image), else None.
        inherited: what its base sets (known for bases built by this manifest only).
    """

    path: str
    dockerfile: Dockerfile
    target: str | None = None
    base_image: str | None = None
    inherited: Inherited | None = None


def uses_base_image(image: str) -> bool:
    """True when a FROM image is `$BASE_IMAGE` / `${BASE_IMAGE}`."""
    return _BASE_RE.fullmatch(image) is not None


def _is_root(user: str) -> bool:
    return user.split(":")[0] in ("root", "0")


def _instructions(stages: list[Stage], keyword: str) -> list[Instruction]:
    return [i for s in stages for i in s.instructions if i.keyword == keyword]


def final_facts(target: DockerfileTarget) -> Inherited | None:
    """What an image built from `target` hands down to the images built on it (None: unknown)."""
    final = target.dockerfile.final_stage(target.target)
    if final is None:
        return None
    chain = target.dockerfile.chain(final)
    start: Inherited | None = None
    if uses_base_image(chain[0].base):
        start = target.inherited
    elif chain[0].base.lower() == "scratch":
        start = Inherited(None, False)
    users = _instructions(chain, "USER")
    checks = _instructions(chain, "HEALTHCHECK")
    if start is None and not users:
        return None
    user = users[-1].words[0] if users and users[-1].words else (start.user if start else None)
    healthcheck = start.healthcheck if start else False
    if checks:
        healthcheck = not checks[-1].value.upper().startswith("NONE")
    return Inherited(user, healthcheck)


def _frontend_rules(target: DockerfileTarget) -> list[Finding]:
    syntax = target.dockerfile.directives.get("syntax", "")
    if not syntax or "@sha256:" in syntax:
        return []
    message = (
        f"`# syntax={syntax}`: BuildKit fetches this frontend by tag at build time, even "
        "with network: none, so it can change a build that no plan shows"
    )
    line = target.dockerfile.directive_lines.get("syntax", 1)
    return [UNPINNED_FRONTEND.at(target.path, line, message)]


def _base_rules(target: DockerfileTarget, chain: list[Stage]) -> list[Finding]:
    dockerfile, path, root = target.dockerfile, target.path, chain[0]
    found: list[Finding] = []
    declared = {w.split("=")[0] for arg in dockerfile.global_args for w in arg.words}
    users = [s for s in dockerfile.stages if uses_base_image(s.base)]
    if users and "BASE_IMAGE" not in declared:
        found.append(NO_BASE_ARG.at(path, users[0].from_.line))
    if not uses_base_image(root.base) and not (root.base.lower() == "scratch" and users):
        message = f"the image is built FROM {root.base}, not ${{BASE_IMAGE}}: imagectl cannot "
        found.append(NOT_BASE_IMAGE.at(path, root.from_.line, message + "pin or follow its base"))
    for stage in dockerfile.stages:
        if stage is root or uses_base_image(stage.base) or dockerfile.parent(stage) is not None:
            continue
        if stage.base.lower() != "scratch" and "@sha256:" not in stage.base:
            message = f"stage FROM {stage.base}: imagectl does not follow it, so its updates "
            found.append(UNFOLLOWED.at(path, stage.from_.line, message + "never cause a rebuild"))
    return found


def _user_rules(target: DockerfileTarget, chain: list[Stage]) -> list[Finding]:
    users = _instructions(chain, "USER")
    if users:
        last = users[-1]
        if last.words and _is_root(last.words[0]):
            message = f"the last USER is {last.words[0]}: the container runs as root"
            return [ROOT_USER.at(target.path, last.line, message)]
        return []
    facts = final_facts(target)
    if facts is None:
        message = "no USER in the final stage: it runs as the base image's user (root for most)"
    elif facts.user is None or _is_root(facts.user):
        message = "no USER in the final stage nor in its base: the container runs as root"
    else:
        return []
    return [NO_USER.at(target.path, chain[-1].from_.line, message)]


def _service_rules(target: DockerfileTarget, chain: list[Stage]) -> list[Finding]:
    exposes = _instructions(chain, "EXPOSE")
    if not exposes or _instructions(chain, "HEALTHCHECK"):
        return []
    if uses_base_image(chain[0].base) and target.inherited and target.inherited.healthcheck:
        return []
    message = f"a service image (EXPOSE {exposes[0].value}) without HEALTHCHECK"
    return [NO_HEALTHCHECK.at(target.path, exposes[0].line, message)]


def _run_rules(target: DockerfileTarget, run: Instruction) -> list[Finding]:
    found: list[Finding] = []
    script = run.script
    mounts = " ".join(run.flag("mount"))
    cached = "type=cache" in mounts and "/var/lib/apt" in mounts
    if _UPDATE_RE.search(script) and not _CLEAN_RE.search(script) and not cached:
        found.append(APT_LISTS.at(target.path, run.line))
    upgrade = _UPGRADE_RE.search(script)
    if upgrade and target.base_image is not None:
        command = " ".join(upgrade.group(0).split())
        message = f"`{command}` in a derived image (built on '{target.base_image}')"
        found.append(UPGRADE.at(target.path, run.line, message))
    return found


def _add_rules(target: DockerfileTarget, add: Instruction) -> list[Finding]:
    sources = [w for w in add.words[:-1] if not w.startswith("<<")]
    if add.heredocs:
        sources.append(f"<<{add.heredocs[0].name}")
    urls = [s for s in sources if _URL_RE.match(s)]
    local = [s for s in sources if not _URL_RE.match(s) and not _TAR_RE.search(s)]
    found: list[Finding] = []
    if local:
        found.append(ADD_LOCAL.at(target.path, add.line, f"ADD of local files ({local[0]})"))
    if urls and not add.flag("checksum"):
        message = f"ADD of a URL ({urls[0]}) downloads it unverified on every build"
        found.append(ADD_URL.at(target.path, add.line, message))
    return found


def secret_name(name: str) -> bool:
    """True when a variable or label name looks like it holds a secret."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()
    words = [w for w in re.split(r"[^A-Z0-9]+", spaced) if w]
    if not words or words[-1] in _NOT_SECRET_LAST:
        return False
    pairs = set(itertools.pairwise(words))
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_PAIRS & pairs)


def looks_secret(name: str, value: str) -> bool:
    """True when a variable's name or its value looks like a secret (IC207)."""
    return secret_name(name) or _SECRET_VALUE_RE.search(value) is not None


def _secret_rules(target: DockerfileTarget, instruction: Instruction) -> list[Finding]:
    words = instruction.words
    if instruction.keyword == "ENV" and words and "=" not in words[0]:
        pairs = [(words[0], " ".join(words[1:]))]  # legacy `ENV NAME value`
    else:
        pairs = [(w.partition("=")[0], w.partition("=")[2]) for w in words]
    for name, value in pairs:
        if looks_secret(name, value):
            message = (
                f"{instruction.keyword} {name}: a secret in {instruction.keyword} "
                "stays in the image and its history"
            )
            return [SECRET.at(target.path, instruction.line, message)]
    return []


def check_dockerfile(target: DockerfileTarget) -> list[Finding]:
    """Every IC2xx finding of one Dockerfile as built for one image (ignores not applied)."""
    dockerfile, path = target.dockerfile, target.path
    found = [SYNTAX.at(path, p.location.line, p.message) for p in dockerfile.problems]
    final = dockerfile.final_stage(target.target)
    if final is None:
        if target.target is not None and dockerfile.stages:
            message = f"the target stage '{target.target}' (set in the manifest) is not defined"
            found.append(SYNTAX.at(path, 1, message))
        return found
    chain = dockerfile.chain(final)
    found += _frontend_rules(target) + _base_rules(target, chain) + _user_rules(target, chain)
    found += _service_rules(target, chain)
    for instruction in dockerfile.instructions:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            found += _secret_rules(target, instruction)
        elif instruction.keyword == "ADD":
            found += _add_rules(target, instruction)
    for run in _instructions(chain, "RUN"):
        found += _run_rules(target, run)
    for keyword in ("ENTRYPOINT", "CMD"):
        last = _instructions(chain, keyword)[-1:]
        if last and not last[0].exec_form:
            message = f"shell-form {keyword}: /bin/sh is PID 1 and swallows signals"
            found.append(SHELL_FORM.at(path, last[0].line, message))
    return found
