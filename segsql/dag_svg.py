"""A small layered-DAG layout rendered to inline SVG, so the docs site needs no graph library.

Layers go left to right (longest path from the sources, so every edge points right); within a
layer, nodes are ordered by a few barycenter sweeps to cut crossings. Everything is deterministic:
ties break by node id, coordinates are integers, and the SVG text depends only on the input.
Meant for neighbourhoods of tens of nodes, not for whole graphs of thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

NODE_HEIGHT = 28
LAYER_GAP = 56
ROW_GAP = 14
CHAR_WIDTH = 7  # at 12px sans-serif, a generous average: labels never overflow their box
PADDING = 12
MAX_LABEL = 30
SWEEPS = 4


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    href: str | None = None
    css_class: str = ""
    title: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    css_class: str = ""


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int


def layers_of(nodes: Sequence[Node], edges: Sequence[Edge]) -> dict[str, int]:
    """Longest-path layering: a node sits one layer right of its furthest predecessor."""
    ids = sorted(n.id for n in nodes)
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for edge in edges:
        preds[edge.target].append(edge.source)
    layer: dict[str, int] = {}

    def visit(node: str, path: frozenset[str]) -> int:
        if node not in layer:
            if node in path:
                raise ValueError(f"cycle through {node}")
            inner = path | {node}
            layer[node] = 1 + max((visit(p, inner) for p in preds[node]), default=-1)
        return layer[node]

    for node in ids:
        visit(node, frozenset())
    return layer


def order_layers(layer: dict[str, int], edges: Sequence[Edge]) -> list[list[str]]:
    """Nodes of each layer, ordered by barycenter sweeps (down, then up) starting from id order."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in sorted(layer):
        rows[layer[node]].append(node)
    preds: dict[str, list[str]] = {n: [] for n in layer}
    succs: dict[str, list[str]] = {n: [] for n in layer}
    for edge in edges:
        preds[edge.target].append(edge.source)
        succs[edge.source].append(edge.target)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(rows)) if downward else range(len(rows) - 2, -1, -1)
        for i in indices:
            neighbour_row = rows[i - 1] if downward else rows[i + 1]
            position = {n: p for p, n in enumerate(neighbour_row)}
            links = preds if downward else succs
            rows[i] = sorted(rows[i], key=lambda n: _barycenter(n, links[n], position, rows[i]))
    return rows


def _barycenter(
    node: str, neighbours: list[str], position: dict[str, int], row: list[str]
) -> tuple[float, int]:
    placed = [position[n] for n in neighbours if n in position]
    current = row.index(node)
    return (sum(placed) / len(placed) if placed else float(current), current)


def short_label(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "\u2026"


def place(nodes: Sequence[Node], rows: list[list[str]]) -> tuple[dict[str, Box], int, int]:
    """Boxes per node, and the drawing's width and height; each layer is centred vertically."""
    labels = {n.id: short_label(n.label) for n in nodes}
    widths = {i: len(text) * CHAR_WIDTH + 2 * PADDING for i, text in labels.items()}
    tallest = max((len(r) for r in rows), default=0)
    height = tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP if tallest else 0
    boxes: dict[str, Box] = {}
    x = 0
    for row in rows:
        column_width = max((widths[n] for n in row), default=0)
        top = (height - (len(row) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP)) // 2
        for index, node in enumerate(row):
            y = top + index * (NODE_HEIGHT + ROW_GAP)
            boxes[node] = Box(x + (column_width - widths[node]) // 2, y, widths[node])
        x += column_width + LAYER_GAP
    return boxes, max(x - LAYER_GAP, 0), height


def _edge_path(source: Box, target: Box) -> str:
    x1, y1 = source.x + source.width, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2 - 2},{y2}"


def _node_svg(node: Node, box: Box) -> str:
    title = escape(node.title or node.label)
    shape = (
        f'<rect x="{box.x}" y="{box.y}" width="{box.width}" height="{NODE_HEIGHT}" rx="6"/>'
        f'<text x="{box.x + box.width // 2}" y="{box.y + NODE_HEIGHT // 2 + 4}">'
        f"{escape(short_label(node.label))}</text>"
    )
    inner = f"<title>{title}</title>{shape}"
    classes = escape(f"node {node.css_class}".strip())
    if node.href:
        return f'<a href="{escape(node.href)}" class="{classes}">{inner}</a>'
    return f'<g class="{classes}">{inner}</g>'


def render_svg(nodes: Sequence[Node], edges: Sequence[Edge], label: str) -> str:
    """The graph as a standalone <svg> element (no scripts, no external references)."""
    if not nodes:
        return ""
    rows = order_layers(layers_of(nodes, edges), edges)
    boxes, width, height = place(nodes, rows)
    margin = 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="img" aria-label="{escape(label)}"'
        f' width="{width + 2 * margin}" height="{height + 2 * margin}"'
        f' viewBox="{-margin} {-margin} {width + 2 * margin} {height + 2 * margin}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for edge in sorted(edges, key=lambda e: (e.source, e.target, e.css_class)):
        path = _edge_path(boxes[edge.source], boxes[edge.target])
        classes = escape(f"edge {edge.css_class}".strip())
        parts.append(f'<path class="{classes}" d="{path}" marker-end="url(#arrow)"/>')
    for node in sorted(nodes, key=lambda n: n.id):
        parts.append(_node_svg(node, boxes[node.id]))
    parts.append("</svg>")
    return "\n".join(parts)
