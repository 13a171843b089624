"""The image graph: build order, descendants, closure, depth and cycles spelled out."""

from __future__ import annotations

from imagectl.domain.graph import ImageGraph

GRAPH = ImageGraph.build(
    {
        "base": "debian",
        "python": "base",
        "node": "base",
        "api": "python",
        "web": "node",
        "tool": "alpine",
    }
)


def test_order_is_parents_first_and_stable_by_name_within_a_level() -> None:
    assert GRAPH.order() == ["base", "tool", "node", "python", "api", "web"]


def test_descendants_of_an_external_base_and_of_an_image() -> None:
    assert GRAPH.descendants("debian") == {"base", "python", "node", "api", "web"}
    assert GRAPH.descendants("python") == {"api"}
    assert GRAPH.descendants("web") == set()


def test_ancestors_closure_and_depth() -> None:
    assert GRAPH.ancestors("api") == ["python", "base"]
    assert GRAPH.closure(["api", "tool"]) == {"api", "python", "base", "tool"}
    assert [GRAPH.depth(n) for n in ("base", "python", "api", "tool")] == [0, 1, 2, 0]
    assert GRAPH.internal_parent("base") is None
    assert GRAPH.internal_parent("api") == "python"


def test_no_cycle_in_a_tree() -> None:
    assert GRAPH.find_cycle() is None


def test_cycle_is_spelled_out_from_its_smallest_name() -> None:
    graph = ImageGraph.build({"c": "a", "a": "b", "b": "c", "d": "c"})
    assert graph.find_cycle() == ["a", "b", "c", "a"]


def test_self_reference_is_a_cycle() -> None:
    assert ImageGraph.build({"x": "x"}).find_cycle() == ["x", "x"]
