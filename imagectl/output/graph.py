"""Render the family/base graph as a tree, Mermaid, Graphviz dot or JSON."""

from __future__ import annotations

import json
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


def render_mermaid(manifest: Manifest) -> str:
    """A Mermaid flowchart, one subgraph per family."""
    lines = ["graph TD"]
    for root in _roots(manifest):
        lines.append(f'  {_node_id(root)}[("{_base_label(manifest, root)}")]')
    families: dict[str, list[str]] = {}
    for name, image in manifest.images.items():
        families.setdefault(image.family, []).append(name)
    for family, names in sorted(families.items()):
        lines.append(f"  subgraph {_node_id('family_' + family)}[{family}]")
        for name in sorted(names):
            lines.append(f'    {_node_id(name)}["{name} {manifest.images[name].version}"]')
        lines.append("  end")
    for name, image in manifest.images.items():
        lines.append(f"  {_node_id(image.base)} --> {_node_id(name)}")
    return "\n".join(lines) + "\n"


def render_dot(manifest: Manifest) -> str:
    """A Graphviz digraph, one cluster per family."""
    lines = ["digraph imagectl {", "  rankdir=LR;", "  node [shape=box];"]
    for root in _roots(manifest):
        lines.append(f'  "{root}" [shape=cylinder, label="{_base_label(manifest, root)}"];')
    families: dict[str, list[str]] = {}
    for name, image in manifest.images.items():
        families.setdefault(image.family, []).append(name)
    for family, names in sorted(families.items()):
        lines.append(f'  subgraph "cluster_{family}" {{')
        lines.append(f'    label="{family}";')
        for name in sorted(names):
            lines.append(f'    "{name}" [label="{name}\\n{manifest.images[name].version}"];')
        lines.append("  }")
    for name, image in manifest.images.items():
        lines.append(f'  "{image.base}" -> "{name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


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
