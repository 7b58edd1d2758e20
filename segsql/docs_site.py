"""`segsql docs`: a static documentation site that opens from the file system, with no network.

The site is a view of the manifest (`emit.manifest`): a catalogue page (the segment list is JSON
embedded in the page, filtered and paginated by a small script, so 10,000 segments stay fast), one
page per segment (definition excerpt, file:line, SQL per target, its neighbourhood in the lineage
graph as inline SVG, columns read, members with `--with-data`), one page per entity and an
impact index from source columns to the segments reading them. With `--with-data`, segment pages
also show KPI values (vs parent and entity) and, when snapshots exist, a growth chart.

Pages are rendered from `segsql/templates/docs` with autoescaping; the build is a pure function
from the compiled project to {relative path: text}, so output bytes are deterministic, and the
folder is swapped in whole, so readers never see a half-written site.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from segsql.build import CompiledProject
from segsql.dag_svg import Edge, Node, render_svg
from segsql.emit import (
    Target,
    entity_header,
    feature_query,
    manifest,
    segment_header,
    segment_query,
    to_sql,
)
from segsql.history import Growth
from segsql.history_plot import Series
from segsql.history_plot import render_svg as growth_svg
from segsql.kpis import format_kpi

# Ancestors decide membership, so they are all drawn (up to the limit); descendants can number in
# the thousands, so only GRAPH_DEPTH levels of them are.
GRAPH_DEPTH = 2
GRAPH_LIMIT = 16  # nodes per direction; the rest is summarised by one "+N more" node
PAGE_SIZE = 50
GROWTH_ROWS = 12  # most recent periods listed under the growth chart
ASSETS = ("style.css", "app.js")


@dataclass(frozen=True)
class KpiColumn:
    name: str
    format: str  # number | percent | currency
    description: str | None = None


@dataclass(frozen=True)
class SiteData:
    """Optional warehouse facts shown beside the definitions (`segsql docs --with-data`)."""

    target: str
    counts: dict[str, int]  # segment name -> members; "entity:<name>" -> entity size
    # segment name (or "entity:<name>" for the whole entity) -> one row of `segsql kpis`
    kpis: dict[str, dict[str, Any]] = field(default_factory=dict)
    kpi_columns: dict[str, tuple[KpiColumn, ...]] = field(default_factory=dict)  # per entity
    growth: dict[str, tuple[Growth, ...]] = field(default_factory=dict)  # per segment, by date


def build_site(
    compiled: CompiledProject, targets: list[Target], data: SiteData | None = None
) -> dict[str, str]:
    """Every file of the site: relative path -> text."""
    info = manifest(compiled, targets, compiled.project.config.root / "target")
    env = _environment()
    common = {"project": info["project"], "as_of": info["as_of"], "data": data}
    files: dict[str, str] = {}
    for asset in ASSETS:
        files[f"assets/{asset}"] = _template_text(f"assets/{asset}")
    catalogue = [_catalogue_row(name, entry, data) for name, entry in info["segments"].items()]
    files["index.html"] = env.get_template("index.html").render(
        common,
        root="",
        catalogue_json=_script_json(catalogue),
        facets=_facets(catalogue),
        total=len(catalogue),
        entities=info["entities"],
        page_size=PAGE_SIZE,
    )
    for name in info["segments"]:
        files[f"segments/{name}.html"] = env.get_template("segment.html").render(
            common, root="../", **_segment_context(compiled, targets, info, name, data)
        )
    for name in info["entities"]:
        files[f"entities/{name}.html"] = env.get_template("entity.html").render(
            common, root="../", **_entity_context(compiled, targets, info, name, data)
        )
    files["columns.html"] = env.get_template("columns.html").render(
        common, root="", columns=_column_index(info)
    )
    return files


# ---------------------------------------------------------------------------------------------
# templates


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_text),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["percent"] = lambda x: "" if x is None else f"{x:.1%}"
    env.filters["kpi"] = format_kpi
    return env


def _template_text(name: str) -> str:
    return (resources.files("segsql") / "templates" / "docs" / name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside <script type="application/json">: `</` cannot close the element."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("</", "<\\/")


# ---------------------------------------------------------------------------------------------
# catalogue


def _catalogue_row(name: str, entry: dict[str, Any], data: SiteData | None) -> dict[str, Any]:
    return {
        "name": name,
        "kind": entry["kind"] or "",
        "entity": entry["entity"],
        "owner": entry["owner"] or "",
        "tags": entry["tags"],
        "description": entry["description"] or "",
        "parent": entry["parent"] or "",
        "file": f"{entry['file']}:{entry['line']}",
        "columns": entry["source_columns"],
        "members": data.counts.get(name) if data else None,
    }


def _facets(catalogue: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The values each filter offers, sorted, so the page is the same on every build."""
    return {
        "kind": sorted({r["kind"] for r in catalogue if r["kind"]}),
        "entity": sorted({r["entity"] for r in catalogue}),
        "owner": sorted({r["owner"] for r in catalogue if r["owner"]}),
        "tag": sorted({t for r in catalogue for t in r["tags"]}),
    }


def _column_index(info: dict[str, Any]) -> list[tuple[str, list[str]]]:
    readers: dict[str, list[str]] = {}
    for name, entry in info["segments"].items():
        for column in entry["source_columns"]:
            readers.setdefault(column, []).append(name)
    return sorted((column, sorted(names)) for column, names in readers.items())


# ---------------------------------------------------------------------------------------------
# segment pages


def _segment_context(
    compiled: CompiledProject,
    targets: list[Target],
    info: dict[str, Any],
    name: str,
    data: SiteData | None,
) -> dict[str, Any]:
    segment = compiled.segments[name]
    entity = compiled.entities[segment.entity]
    entry = info["segments"][name]
    # Each query is built only to be printed: skipping sqlglot's defensive copy halves the time.
    sql = {
        t.name: segment_header(compiled, segment, t)
        + to_sql(segment_query(segment, entity, t), t, copy=False)
        for t in targets
    }
    return {
        "name": name,
        "segment": entry,
        "yaml": yaml_excerpt(segment.definition.loc.path, segment.definition.loc.line),
        "sql": sql,
        "engines": {t.name: t.engine.name for t in targets},
        "graph": neighbourhood_svg(info, name),
        "members": _members(name, entry, data),
        "kpis": _kpi_rows(name, entry, data),
        "growth": _growth(name, data),
    }


def _members(name: str, entry: dict[str, Any], data: SiteData | None) -> dict[str, Any] | None:
    if data is None or name not in data.counts:
        return None
    count = data.counts[name]
    total = data.counts.get(f"entity:{entry['entity']}")
    parent = data.counts.get(entry["parent"]) if entry["parent"] else None
    return {
        "count": count,
        "of_entity": count / total if total else None,
        "of_parent": count / parent if parent else None,
        "target": data.target,
    }


def yaml_excerpt(path: Path, line: int) -> str:
    """The YAML of one list item: its first line and every line indented below it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    start = max(line - 1, 0)
    if start >= len(lines):
        return ""
    first = lines[start]
    indent = len(first) - len(first.lstrip(" "))
    is_item = first.lstrip(" ").startswith("-")
    end = start + 1
    while end < len(lines):
        text = lines[end]
        depth = len(text) - len(text.lstrip(" "))
        item_sibling = not is_item and depth == indent and text.lstrip(" ").startswith("-")
        if text.strip() and (depth < indent or (is_item and depth == indent) or item_sibling):
            break
        end += 1
    body = lines[start:end]
    while body and not body[-1].strip():
        body.pop()
    return "\n".join(b[indent:] if b[:indent].strip() == "" else b for b in body) + "\n"


def _kpi_rows(name: str, entry: dict[str, Any], data: SiteData | None) -> list[dict[str, Any]]:
    """Size and each KPI of the segment, beside its parent's and the whole entity's values."""
    if data is None or name not in data.kpis:
        return []
    own = data.kpis[name]
    parent = data.kpis.get(entry["parent"] or "", {})
    entity = data.kpis.get(f"entity:{entry['entity']}", {})
    columns = [KpiColumn("size", "number", "members"), *data.kpi_columns.get(entry["entity"], ())]
    return [
        {
            "name": column.name,
            "description": column.description or "",
            "value": format_kpi(own.get(column.name), column.format),
            "parent": format_kpi(parent.get(column.name), column.format),
            "lift": format_kpi(own.get(f"lift_{column.name}"), "ratio"),
            "entity": format_kpi(entity.get(column.name), column.format),
        }
        for column in columns
    ]


def _growth(name: str, data: SiteData | None) -> dict[str, Any] | None:
    """The segment's size over its snapshots, as a chart and the most recent periods."""
    history = data.growth.get(name) if data else None
    if not history:
        return None
    series = Series(name, tuple((g.as_of, g.size) for g in history))
    periods = list(reversed(history[-GROWTH_ROWS:]))
    return {"svg": growth_svg([series]), "periods": periods, "snapshots": len(history)}


def _reach(
    start: str, step: Callable[[str], list[str]], limit: int, depth: int | None
) -> tuple[list[str], int]:
    """Nodes reachable from `start` (itself excluded), a whole level at a time while it fits in
    `limit`, and how many reachable nodes were left out. Levels are never drawn in part beyond
    the first: a half-drawn level would suggest the other nodes have no children."""
    drawn: list[str] = []
    seen = {start}
    frontier = [start]
    level = 0
    cut = False
    while frontier:
        nxt = [o for n in frontier for o in step(n) if o not in seen]
        nxt = list(dict.fromkeys(nxt))
        seen.update(nxt)
        level += 1
        within_depth = depth is None or level <= depth
        if not cut and within_depth:
            room = limit - len(drawn)
            if len(nxt) <= room:
                drawn += nxt
            else:
                cut = True
                if not drawn:
                    drawn += nxt[:room]
        frontier = nxt
    return drawn, len(seen) - 1 - len(drawn)


def neighbourhood_svg(info: dict[str, Any], name: str) -> dict[str, Any]:
    """The segment with its ancestors (parents and operands) and GRAPH_DEPTH levels of children."""
    segments = info["segments"]
    up, hidden_up = _reach(name, lambda n: segments[n]["depends_on"], GRAPH_LIMIT, None)
    down, hidden_down = _reach(name, lambda n: segments[n]["children"], GRAPH_LIMIT, GRAPH_DEPTH)
    chosen = {name, *up, *down}
    nodes = [
        Node(
            id=n,
            label=n,
            href=None if n == name else f"{n}.html",
            css_class="focus" if n == name else f"kind-{segments[n]['kind'] or 'none'}",
            title=f"{n} ({segments[n]['kind'] or 'segment'}, {segments[n]['entity']})",
        )
        for n in sorted(chosen)
    ]
    edges = [
        Edge(ref, n, role)
        for n in sorted(chosen)
        for role, refs in _roles(segments[n]).items()
        for ref in refs
        if ref in chosen
    ]
    cut_up = [n for n in [name, *up] if any(p not in chosen for p in segments[n]["depends_on"])]
    cut_down = [n for n in [name, *down] if any(c not in chosen for c in segments[n]["children"])]
    nodes, edges = _with_more_nodes(nodes, edges, cut_up, cut_down, (hidden_up, hidden_down))
    svg = render_svg(nodes, edges, f"lineage of {name}")
    return {"svg": svg, "hidden_up": hidden_up, "hidden_down": hidden_down, "size": len(chosen)}


def _with_more_nodes(
    nodes: list[Node],
    edges: list[Edge],
    cut_up: list[str],
    cut_down: list[str],
    hidden: tuple[int, int],
) -> tuple[list[Node], list[Edge]]:
    """A "+N more" box on each side that was cut, linked to the drawn segments whose parents
    (or children) are not drawn, so a trimmed graph never looks complete."""
    for side, frontier, count in (
        ("upstream", cut_up, hidden[0]),
        ("downstream", cut_down, hidden[1]),
    ):
        if not count or not frontier:
            continue
        node_id = f"\x00more-{side}"  # cannot clash with a segment name
        label = f"+{count:,} more {side}"
        nodes = [*nodes, Node(node_id, label, css_class="more", title=label)]
        if side == "upstream":
            edges = [*edges, *(Edge(node_id, n, "more") for n in frontier)]
        else:
            edges = [*edges, *(Edge(n, node_id, "more") for n in frontier)]
    return nodes, edges


def _roles(entry: dict[str, Any]) -> dict[str, list[str]]:
    parent = [entry["parent"]] if entry["parent"] else []
    return {
        "parent": parent,
        "union": entry["union"],
        "intersect": entry["intersect"],
        "exclude": entry["exclude"],
    }


# ---------------------------------------------------------------------------------------------
# entity pages


def _entity_context(
    compiled: CompiledProject,
    targets: list[Target],
    info: dict[str, Any],
    name: str,
    data: SiteData | None,
) -> dict[str, Any]:
    entity = compiled.entities[name]
    sql = {
        t.name: entity_header(compiled, entity, t) + to_sql(feature_query(entity, t), t)
        for t in targets
    }
    features = [
        {
            "name": f.name,
            "expr": f.definition.expr.text,
            "table": f.definition.source.table if f.definition.source else None,
            "where": f.definition.source.where.text
            if f.definition.source and f.definition.source.where
            else None,
            "window": f"{f.definition.window.amount} {f.definition.window.unit}"
            if f.definition.window
            else None,
            "description": f.definition.description,
        }
        for f in entity.features
    ]
    return {
        "name": name,
        "entity": info["entities"][name],
        "features": features,
        "segments": [n for n, e in info["segments"].items() if e["entity"] == name],
        "sql": sql,
        "engines": {t.name: t.engine.name for t in targets},
        "size": data.counts.get(f"entity:{name}") if data else None,
    }
