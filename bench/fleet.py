"""Generate a benchmark fleet: families of image chains on a few external bases.

Default shape (issue 4): 2,000 images = 100 families x 4 chains x depth 5, on 10
external bases; each family shares one build context (images differ by args), so
the inputs hasher sees 100 distinct contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG LEVEL
COPY app/ /srv/app/
RUN echo "level ${LEVEL}" > /srv/level
USER 65534
CMD ["/bin/sh"]
"""


@dataclass(frozen=True)
class FleetShape:
    """How big a fleet to make."""

    families: int = 100
    chains: int = 4
    depth: int = 5
    bases: int = 10

    @property
    def images(self) -> int:
        return self.families * self.chains * self.depth


def base_repository(index: int) -> str:
    return f"upstream/bench-base-{index}"


def write_fleet(root: Path, registry_host: str, shape: FleetShape) -> Path:
    """Write the manifest tree under `root`; returns the root manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "families").mkdir(exist_ok=True)
    lines = [
        "version: 1",
        f"registry: {registry_host}/bench",
        'include: ["families/*.yaml"]',
        "defaults:",
        "  network: host",
        "  rebuild: weekly",
        "bases:",
    ]
    for b in range(shape.bases):
        lines += [f"  b{b}:", f"    ref: {registry_host}/{base_repository(b)}:1"]
    (root / "imagectl.yaml").write_text("\n".join(lines) + "\n")
    for f in range(shape.families):
        family = f"f{f:03d}"
        context = root / "contexts" / family
        (context / "app").mkdir(parents=True, exist_ok=True)
        (context / "Dockerfile").write_text(DOCKERFILE)
        for i in range(5):
            (context / "app" / f"module{i}.sh").write_text(f"echo {family} module {i}\n" * 20)
        (context / ".dockerignore").write_text("*.md\n")
        out = ["families:", f"  {family}:", f"    from: b{f % shape.bases}", "    images:"]
        for c in range(shape.chains):
            for d in range(shape.depth):
                name = f"{family}-c{c}-d{d}"
                out += [f"      {name}:", f"        context: ../contexts/{family}"]
                out += [f'        version: "1.{d}"', f'        args: {{LEVEL: "{d}"}}']
                if d > 0:
                    out.append(f"        from: {family}-c{c}-d{d - 1}")
        (root / "families" / f"{family}.yaml").write_text("\n".join(out) + "\n")
    return root / "imagectl.yaml"
