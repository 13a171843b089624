"""Render the family/base graph as a tree, Mermaid, Graphviz dot or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.tree import Tree

from imagectl.domain.graph import ImageGraph
from imagectl.manifest.models import Manifest


def manifest_graph(manifest: Manifest) -> ImageGraph:
    """The image graph of a resolved manifest."""
    return ImageGraph.build({name: image.base for name, image in manifest.images.items()})


def _base_label(manifest: Manifest, key: str) -> str:
    base = manifest.bases.get(key)
    if base is None or base.ref == key:
        return key
    return f"{key} ({base.ref})"


def _roots(manifest: Manifest) -> list[str]:
    return sorted({image.base for image in manifest.images.values()} - set(manifest.images))


def render_tree(manifest: Manifest) -> Tree:
    """A rich Tree: external bases at the roots, images below their base."""
    graph = manifest_graph(manifest)
    top = Tree(f"{manifest.root.name}", guide_style="dim")

    def add(node: Tree, name: str) -> None:
        image = manifest.images[name]
        branch = node.add(f"[bold]{name}[/bold] {image.version} [dim]({image.family})[/dim]")
        for child in graph.children.get(name, ()):
            add(branch, child)

    for root in _roots(manifest):
        branch = top.add(f"[cyan]{_base_label(manifest, root)}[/cyan]")
        for child in graph.children.get(root, ()):
            add(branch, child)
    return top


def _node_id(name: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def _families(manifest: Manifest) -> list[tuple[str, list[str]]]:
    """(family, its image names sorted), by family name."""
    families: dict[str, list[str]] = {}
    for name, image in manifest.images.items():
        families.setdefault(image.family, []).append(name)
    return sorted((family, sorted(names)) for family, names in families.items())


@dataclass(frozen=True)
class _Syntax:
    """How one graph language writes each part (format strings)."""

    head: tuple[str, ...]
    root: str  # {id} {label}
    family: str  # {fid} {family}
    node: str  # {id} {name} {version}
    end: str
    edge: str  # {src} {dst}
    tail: tuple[str, ...]
    ident: Callable[[str], str]


_MERMAID = _Syntax(
    head=("graph TD",),
    root='  {id}[("{label}")]',
    family="  subgraph {fid}[{family}]",
    node='    {id}["{name} {version}"]',
    end="  end",
    edge="  {src} --> {dst}",
    tail=(),
    ident=_node_id,
)
_DOT = _Syntax(
    head=("digraph imagectl {", "  rankdir=LR;", "  node [shape=box];"),
    root='  {id} [shape=cylinder, label="{label}"];',
    family='  subgraph "cluster_{family}" {{\n    label="{family}";',
    node='    {id} [label="{name}\\n{version}"];',
    end="  }",
    edge="  {src} -> {dst};",
    tail=("}",),
    ident=lambda name: f'"{name}"',
)


def _render(manifest: Manifest, syntax: _Syntax) -> str:
    ident = syntax.ident
    lines = list(syntax.head)
    for root in _roots(manifest):
        lines.append(syntax.root.format(id=ident(root), label=_base_label(manifest, root)))
    for family, names in _families(manifest):
        lines.append(syntax.family.format(fid=ident("family_" + family), family=family))
        for name in names:
            version = manifest.images[name].version
            lines.append(syntax.node.format(id=ident(name), name=name, version=version))
        lines.append(syntax.end)
    for name, image in manifest.images.items():
        lines.append(syntax.edge.format(src=ident(image.base), dst=ident(name)))
    lines.extend(syntax.tail)
    return "\n".join(lines) + "\n"


def render_mermaid(manifest: Manifest) -> str:
    """A Mermaid flowchart, one subgraph per family."""
    return _render(manifest, _MERMAID)


def render_dot(manifest: Manifest) -> str:
    """A Graphviz digraph, one cluster per family."""
    return _render(manifest, _DOT)


def graph_json(manifest: Manifest) -> dict[str, Any]:
    """Nodes (images and external bases) and edges (base -> image), build order included."""
    graph = manifest_graph(manifest)
    nodes: list[dict[str, Any]] = []
    for root in _roots(manifest):
        base = manifest.bases.get(root)
        nodes.append({"id": root, "kind": "base", "ref": base.ref if base else root})
    for name in graph.order():
        image = manifest.images[name]
        nodes.append(
            {
                "id": name,
                "kind": "image",
                "family": image.family,
                "version": image.version,
                "repository": image.repository,
                "depth": graph.depth(name),
            }
        )
    edges = [{"from": image.base, "to": name} for name, image in manifest.images.items()]
    return {"format": 1, "nodes": nodes, "edges": edges, "order": graph.order()}


def render_json(manifest: Manifest) -> str:
    """`graph_json` as indented JSON text."""
    return json.dumps(graph_json(manifest), indent=2) + "\n"
