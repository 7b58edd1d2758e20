"""Stage 2, graph: a small generic DAG (after SQLMesh's `utils/dag.py`).

Used for segment lineage (parent and set operands) and for derived features that read other
features. Orders are deterministic (ties broken by name) and a cycle is reported with its exact
path, e.g. `a -> b -> a`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

N = TypeVar("N", bound=Hashable)


class CycleError(ValueError):
    def __init__(self, path: list[str]):
        self.path = path
        super().__init__(" -> ".join(path))


class DAG(Generic[N]):
    """Nodes with edges to the nodes they depend on (their upstream)."""

    def __init__(self, edges: dict[N, Iterable[N]] | None = None):
        self._upstream: dict[N, list[N]] = {}
        self._downstream: dict[N, list[N]] = {}  # kept beside, so children cost no full scan
        for node, deps in (edges or {}).items():
            self.add(node, deps)

    def add(self, node: N, upstream: Iterable[N] = ()) -> None:
        deps = self._upstream.setdefault(node, [])
        self._downstream.setdefault(node, [])
        for dep in upstream:
            self._upstream.setdefault(dep, [])
            if dep not in deps:
                deps.append(dep)
                self._downstream.setdefault(dep, []).append(node)

    def __contains__(self, node: object) -> bool:
        return node in self._upstream

    @property
    def nodes(self) -> list[N]:
        return sorted(self._upstream, key=str)

    def upstream(self, node: N) -> list[N]:
        """Direct dependencies of `node`."""
        return list(self._upstream.get(node, []))

    def downstream(self, node: N) -> list[N]:
        """Nodes that depend directly on `node`."""
        return sorted(self._downstream.get(node, []), key=str)

    def ancestors(self, node: N) -> set[N]:
        return _reach(node, self.upstream)

    def descendants(self, node: N) -> set[N]:
        return _reach(node, lambda n: self._downstream.get(n, []))

    def sorted(self) -> list[N]:
        """Topological order (dependencies first); raises CycleError with the cycle's path."""
        self.check_acyclic()
        order: list[N] = []
        placed: set[N] = set()

        def place(node: N) -> None:
            if node in placed:
                return
            for dep in sorted(self._upstream[node], key=str):
                place(dep)
            placed.add(node)
            order.append(node)

        for node in self.nodes:
            place(node)
        return order

    def check_acyclic(self) -> None:
        state: dict[N, int] = {}  # 1 = on the current path, 2 = done
        for start in self.nodes:
            if start in state:
                continue
            path: list[N] = [start]
            stack = [iter(sorted(self._upstream[start], key=str))]
            state[start] = 1
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    raise CycleError([str(n) for n in cycle])
                elif nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(sorted(self._upstream[nxt], key=str)))


def _reach(start: N, step: Callable[[N], Iterable[N]]) -> set[N]:
    seen: set[N] = set()
    todo = list(step(start))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(step(node))
    return seen
