"""`segsql lineage`: the lineage graph as a terminal tree, JSON, Mermaid or Graphviz DOT."""

from __future__ import annotations

import json
import re
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segsql.build import CompiledProject
from segsql.cli import AsOfOpt, VarOpt, _compile, app, out, user_errors
from segsql.errors import SpecError
from segsql.lineage import Lineage, SourceColumn, entity_filter_columns
from segsql.select import select_segments

if TYPE_CHECKING:
    from rich.tree import Tree


class LineageFormat(StrEnum):
    text = "text"
    json = "json"
    mermaid = "mermaid"
    dot = "dot"


@app.command("lineage")
def lineage_command(
    selector: Annotated[
        list[str] | None, typer.Argument(help="Segments (selector syntax); default: all.")
    ] = None,
    downstream: Annotated[
        bool, typer.Option("--downstream/--upstream", help="Follow children instead of parents.")
    ] = False,
    column: Annotated[
        str | None, typer.Option("--column", help="Impact analysis: segments reading TABLE.COLUMN.")
    ] = None,
    output: Annotated[LineageFormat, typer.Option("--format", "-f")] = LineageFormat.text,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """Show segment lineage: parents/operands, features, macros and the source columns each segment reads."""
    with user_errors():
        compiled = _compile(as_of, var)
        lineage = Lineage(compiled)
        roots = _impacted(lineage, column) if column else select_segments(compiled, selector)
        names = _closure(compiled, roots, downstream)
        if output is LineageFormat.json:
            sys.stdout.write(
                json.dumps(lineage_json(lineage, names, roots), indent=2, sort_keys=True) + "\n"
            )
        elif output is LineageFormat.mermaid:
            sys.stdout.write(to_mermaid(lineage, names))
        elif output is LineageFormat.dot:
            sys.stdout.write(to_dot(lineage, names))
        else:
            for root in roots:
                out.print(_tree(lineage, root, downstream))


def _impacted(lineage: Lineage, column: str) -> list[str]:
    table, _, name = column.rpartition(".")
    if not table:
        raise SpecError(
            f"--column needs TABLE.COLUMN, got '{column}'", hint="e.g. --column orders.amount"
        )
    impacted = lineage.segments_reading(SourceColumn(table, name))
    if not impacted:
        raise SpecError(
            f"no segment reads {column}",
            hint="check the spelling: table names as declared under `tables:`",
        )
    return impacted


def _closure(compiled: CompiledProject, roots: list[str], downstream: bool) -> list[str]:
    chosen = set(roots)
    for root in roots:
        chosen |= compiled.graph.descendants(root) if downstream else compiled.graph.ancestors(root)
    return [n for n in compiled.segments if n in chosen]


def _label(compiled: CompiledProject, name: str) -> str:
    d = compiled.segments[name].definition
    return f"[bold]{name}[/bold] ({d.kind or 'segment'}, {compiled.segments[name].entity})"


def _tree(lineage: Lineage, name: str, downstream: bool, tree: Tree | None = None) -> Tree:
    compiled = lineage.compiled
    from rich.tree import Tree  # imported by `segsql lineage` only

    node = Tree(_label(compiled, name)) if tree is None else tree.add(_label(compiled, name))
    info = lineage.segment(name)
    if info.features:
        node.add("features: " + ", ".join(info.features))
    if info.source_columns:
        node.add("columns: " + ", ".join(str(c) for c in info.source_columns))
    if info.macros:
        node.add("macros: " + ", ".join(info.macros))
    nxt = compiled.graph.downstream(name) if downstream else compiled.graph.upstream(name)
    for other in nxt:
        _tree(lineage, other, downstream, node)
    return node


def lineage_json(lineage: Lineage, names: list[str], roots: list[str]) -> dict[str, Any]:
    segments = {}
    for name in names:
        info = lineage.segment(name)
        segments[name] = {
            "entity": lineage.compiled.segments[name].entity,
            "upstream": list(info.upstream),
            "features": list(info.features),
            "entity_columns": list(info.entity_columns),
            "source_columns": [str(c) for c in info.source_columns],
            "macros": list(info.macros),
        }
    return {"selected": roots, "segments": segments}


def _edges(lineage: Lineage, names: list[str]) -> list[tuple[str, str, str]]:
    """(from, to, label) in data-flow direction: column -> feature -> segment, parent -> child."""
    edges: set[tuple[str, str, str]] = set()
    drawn = set(names)
    for name in names:
        entity = lineage.compiled.segments[name].entity
        segment = lineage.compiled.segments[name].definition
        for ref in segment.references:
            role = "parent" if segment.parent and ref.name == segment.parent.name else "operand"
            edges.add((f"segment:{ref.name}", f"segment:{name}", role))
        own = set(lineage.compiled.segments[name].columns)
        if not any(ref.name in drawn for ref in segment.references):
            # The entity's row filter (`time`: rows created after as_of do not exist yet) applies
            # to every segment; drawn at the top of each chain, the rest inherit it by the edges.
            own |= entity_filter_columns(lineage.compiled.entities[entity])
        sources = lineage.feature_sources(entity)
        for column in sorted(own):
            feature = f"feature:{entity}.{column}"
            edges.add((feature, f"segment:{name}", ""))
            for source in sources.get(column, set()):
                edges.add((f"column:{source}", feature, ""))
    return sorted(edges)


def _node_id(node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node)


def to_mermaid(lineage: Lineage, names: list[str]) -> str:
    lines = ["graph LR"]
    nodes: set[str] = set()
    for source, target, label in _edges(lineage, names):
        nodes |= {source, target}
        arrow = f"-->|{label}|" if label else "-->"
        lines.append(f"  {_node_id(source)} {arrow} {_node_id(target)}")
    for node in sorted(nodes):
        kind, _, text = node.partition(":")
        shape = {"segment": '(["{}"])', "feature": '["{}"]', "column": '[("{}")]'}[kind]
        lines.append(f"  {_node_id(node)}{shape.format(text)}")
    return "\n".join(lines) + "\n"


def to_dot(lineage: Lineage, names: list[str]) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    nodes: set[str] = set()
    for source, target, label in _edges(lineage, names):
        nodes |= {source, target}
        attrs = f' [label="{label}"]' if label else ""
        lines.append(f'  "{source}" -> "{target}"{attrs};')
    for node in sorted(nodes):
        shape = {"segment": "box", "feature": "ellipse", "column": "cylinder"}[
            node.partition(":")[0]
        ]
        lines.append(f'  "{node}" [shape={shape}, label="{node.partition(":")[2]}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
