"""The lineage DAG: deterministic order, reachability, cycles reported with their exact path."""

from __future__ import annotations

import itertools

import pytest

from segsql.graph import DAG, CycleError


def cycle_of(edges: dict[str, list[str]]) -> str:
    with pytest.raises(CycleError) as caught:
        DAG(edges).sorted()
    return str(caught.value)


def test_two_node_cycle_prints_its_path() -> None:
    assert cycle_of({"a": ["b"], "b": ["a"]}) == "a -> b -> a"


def test_self_reference_is_a_cycle() -> None:
    assert cycle_of({"a": ["a"]}) == "a -> a"


def test_cycle_path_leaves_out_the_way_into_it() -> None:
    # x reaches the cycle b -> c -> d -> b but is not part of it
    edges = {"x": ["b"], "b": ["c"], "c": ["d"], "d": ["b"], "a": []}
    assert cycle_of(edges) == "b -> c -> d -> b"


def test_order_puts_dependencies_first_and_breaks_ties_by_name() -> None:
    edges = {"child": ["parent"], "parent": ["root"], "root": [], "aside": [], "zeta": ["root"]}
    order = DAG(edges).sorted()
    assert order == ["aside", "root", "parent", "child", "zeta"]


def test_order_does_not_depend_on_insertion_order() -> None:
    edges = [("d", ["b", "c"]), ("c", ["a"]), ("b", ["a"]), ("a", []), ("e", ["d", "a"])]
    orders = set()
    for number, permutation in enumerate(itertools.permutations(edges)):
        dag: DAG[str] = DAG()
        for node, deps in permutation:
            dag.add(node, reversed(deps) if number % 2 else deps)
        orders.add(tuple(dag.sorted()))
    assert orders == {("a", "b", "c", "d", "e")}


def test_reachability() -> None:
    dag = DAG({"c": ["b"], "b": ["a"], "d": ["a"], "e": []})
    assert dag.ancestors("c") == {"a", "b"}
    assert dag.descendants("a") == {"b", "c", "d"}
    assert dag.upstream("c") == ["b"]
    assert dag.downstream("a") == ["b", "d"]
    assert dag.ancestors("e") == set() and dag.descendants("e") == set()
    assert "a" in dag and "z" not in dag


def test_duplicate_edges_are_kept_once() -> None:
    dag: DAG[str] = DAG()
    dag.add("b", ["a", "a"])
    dag.add("b", ["a"])
    assert dag.upstream("b") == ["a"]
