"""The image graph: images and external bases as nodes, `from:` as edges.

Pure: built from a name -> base mapping. Topological order is stable (sorted by
name within a level) so plans and outputs are deterministic.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageGraph:
    """Internal edges between images; external bases are leaves outside `parents`."""

    parents: Mapping[str, str]  # image -> its base (image name or external base key)
    images: frozenset[str]
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, bases: Mapping[str, str]) -> ImageGraph:
        """`bases` maps every image name to the name of its base."""
        children: dict[str, list[str]] = {}
        for image, base in bases.items():
            children.setdefault(base, []).append(image)
        return cls(
            parents=dict(bases),
            images=frozenset(bases),
            children={k: tuple(sorted(v)) for k, v in children.items()},
        )

    def internal_parent(self, image: str) -> str | None:
        """The base of `image` when it is an image of the manifest."""
        parent = self.parents.get(image)
        return parent if parent in self.images else None

    def find_cycle(self) -> list[str] | None:
        """A dependency cycle spelled out (`[a, b, a]`), or None."""
        for start in sorted(self.images):
            seen: list[str] = []
            node: str | None = start
            while node is not None and node not in seen:
                seen.append(node)
                node = self.internal_parent(node)
            if node is not None:
                cycle = seen[seen.index(node) :]
                # rotate so the cycle starts at its smallest name: stable messages
                pivot = cycle.index(min(cycle))
                cycle = cycle[pivot:] + cycle[:pivot]
                return [*cycle, cycle[0]]
        return None

    def order(self) -> list[str]:
        """Images parents-first; among ready images, by name. Requires no cycle."""
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for image in self.images:
            parent = self.internal_parent(image)
            sorter.add(image, *([parent] if parent else []))
        sorter.prepare()
        result: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            result.extend(ready)
            sorter.done(*ready)
        return result

    def depth(self, image: str) -> int:
        """0 for an image on an external base, parent's depth + 1 otherwise."""
        level = 0
        parent = self.internal_parent(image)
        while parent is not None:
            level += 1
            parent = self.internal_parent(parent)
        return level

    def descendants(self, node: str) -> set[str]:
        """Every image built (transitively) on `node` (an image or an external base)."""
        found: set[str] = set()
        stack = list(self.children.get(node, ()))
        while stack:
            child = stack.pop()
            if child not in found:
                found.add(child)
                stack.extend(self.children.get(child, ()))
        return found

    def ancestors(self, image: str) -> list[str]:
        """The internal bases of `image`, nearest first."""
        chain: list[str] = []
        parent = self.internal_parent(image)
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = self.internal_parent(parent)
        return chain

    def closure(self, names: Iterable[str]) -> set[str]:
        """`names` and every internal base they need."""
        result: set[str] = set()
        for name in names:
            result.add(name)
            result.update(self.ancestors(name))
        return result
