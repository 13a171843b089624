"""Plan-time checks that a builder can do what an image asks, before anything is built.

Only what would otherwise fail halfway is checked here: docker building several
platforms needs buildx with a driver other than ``docker``. The probe runs only
when some planned image asks docker for several platforms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from imagectl.builders.docker import DockerBuilder, DockerChoice, multi_platform_refusal
from imagectl.errors import BuildError
from imagectl.manifest.models import ImageConfig


def capability_problems(
    images: Iterable[ImageConfig],
    detect_docker: Callable[[], DockerChoice] | None = None,
) -> list[str]:
    """One message per image its builder cannot build as asked (``file:line:col: …``)."""
    wanting = [i for i in images if i.builder == "docker" and len(i.platforms) > 1]
    if not wanting:
        return []
    detect = detect_docker or DockerBuilder().detect
    try:
        choice = detect()
    except BuildError as exc:
        return [f"{image.location}: image '{image.name}': {exc}" for image in wanting]
    problems = []
    for image in wanting:
        refusal = multi_platform_refusal(choice, image.name, image.platforms)
        if refusal:
            why = refusal.removeprefix(f"{image.name}: ")
            problems.append(f"{image.location}: image '{image.name}': {why}")
    return problems
