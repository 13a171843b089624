"""The image graph: images and external bases as nodes, `from:` as edges.

Pure: built from a name -> base mapping. Topological order is stable (sorted by
name within a level) so plans and outputs are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class ImageGraph:
    """Internal edges between images; external bases are leaves outside `parents`."""

    parents: Mapping[str, str]  # image -> its base (image name or external base key)
    images: frozenset[str]

    @classmethod
    def build(cls, bases: Mapping[str, str]) -> ImageGraph:
        """`bases` maps every image name to the name of its base."""
        return cls(parents=dict(bases), images=frozenset(bases))

    @cached_property
    def children(self) -> Mapping[str, tuple[str, ...]]:
        """Each node's images, by name (made on first use: a plan never asks)."""
        children: dict[str, list[str]] = {}
        for image, base in self.parents.items():
            children.setdefault(base, []).append(image)
        return {k: tuple(sorted(v)) for k, v in children.items()}

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
        """Images parents-first; among images of one depth, by name. Requires no cycle.

        Every image has at most one internal parent, so the levels of a topological
        sort are exactly the depths: sorting by (depth, name) is that order, in O(n log n).
        """
        # by name, then (stable) by depth: (depth, name) without a tuple per image
        return sorted(sorted(self.images), key=self._depths.__getitem__)

    def depth(self, image: str) -> int:
        """0 for an image on an external base, parent's depth + 1 otherwise."""
        return self._depths[image]

    @cached_property
    def _depths(self) -> dict[str, int]:
        """Every image's depth, each computed once (memoized along its chain of parents).

        Raises:
            ValueError: the images form a cycle (`find_cycle` spells it out).
        """
        depths: dict[str, int] = {}
        images, parents = self.images, self.parents
        for image in images:
            if image in depths:
                continue
            chain: list[str] = []
            node: str | None = image
            while node is not None and node not in depths:
                chain.append(node)
                if len(chain) > len(images):
                    raise ValueError(f"the images form a cycle: {self.find_cycle()}")
                parent = parents.get(node)
                node = parent if parent in images else None  # internal_parent, inlined
            level = -1 if node is None else depths[node]
            for name in reversed(chain):
                level += 1
                depths[name] = level
        return depths

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
