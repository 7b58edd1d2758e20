"""Column-level lineage: the exact source columns of every segment, checked three ways.

1. By hand: the starter project's YAML read by a person (and the example project's, segment by
   segment), written down below.
2. By the declarations: every column a segment reads is a declared column of a declared table.
3. By the data: setting one source column to NULL in the seed data and re-running every segment on
   DuckDB; any segment whose members change must list that column (lineage misses nothing the
   data shows it depends on).
Then the command line: text, json, mermaid and dot output, `--column` impact, `--downstream`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sqlglot import exp
from typer.testing import CliRunner

from segsql.build import CompiledProject
from segsql.cli import app
from segsql.emit import deploy_statements, resolve_target
from segsql.lineage import Lineage, SourceColumn
from segsql.pipeline import compile_project
from segsql.run import DuckDBRunner, load_seeds

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "segsql" / "templates" / "init"
runner = CliRunner()

# segsql/templates/init/segments/customers.yml, read by hand:
#   orders_90d       = count(*)    of orders by customer_id, ordered_at in the last 90 days
#   lifetime_revenue = sum(amount) of orders by customer_id, ordered_at <= as_of
#   active              where orders_90d > 0
#   active_big_spenders parent active, where lifetime_revenue >= 100
#   active_in_europe    parent active, where country in (...)   (an entity column)
ORDERS_90D = {"orders.customer_id", "orders.ordered_at"}
STARTER_COLUMNS = {
    "active": ORDERS_90D,
    "active_big_spenders": ORDERS_90D | {"orders.amount"},
    "active_in_europe": ORDERS_90D | {"customers.country"},
}
STARTER_FEATURES = {
    "active": ("orders_90d",),
    "active_big_spenders": ("orders_90d", "lifetime_revenue"),
    "active_in_europe": ("orders_90d",),
}
STARTER_MACROS = {
    "active": (),
    "active_big_spenders": ("big_spender_threshold",),
    "active_in_europe": ("is_europe",),
}


def example_ready() -> bool:
    return (REPO / "segsql.yml").is_file() and any((REPO / "segments").rglob("*.yml"))


def copy_project(source: Path, dest: Path) -> Path:
    """A copy without build output or databases, so tests never touch the working tree."""
    ignore = shutil.ignore_patterns(
        ".*", "target", "*.duckdb*", "tests", "bench", "segsql", "*.egg-info"
    )
    shutil.copytree(source, dest, ignore=ignore)
    return dest


@pytest.fixture
def starter(tmp_path: Path) -> Path:
    return copy_project(TEMPLATE, tmp_path / "starter")


@pytest.fixture(params=["starter", "example"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "starter":
        return copy_project(TEMPLATE, tmp_path / "starter")
    if not example_ready():
        pytest.skip("the example project (segsql.yml, segments/) is not in the repository yet")
    return copy_project(REPO, tmp_path / "example")


def columns_of(lineage: Lineage, name: str) -> set[str]:
    return {str(c) for c in lineage.segment(name).source_columns}


# ---------------------------------------------------------------------------------------------
# 1. by hand


def test_starter_segments_read_exactly_the_hand_derived_columns(starter: Path) -> None:
    lineage = Lineage(compile_project(starter))
    assert set(lineage.compiled.segments) == set(STARTER_COLUMNS)
    for name, expected in STARTER_COLUMNS.items():
        info = lineage.segment(name)
        assert columns_of(lineage, name) == expected, name
        assert info.features == STARTER_FEATURES[name], name
        assert info.macros == STARTER_MACROS[name], name
    assert lineage.segment("active_in_europe").entity_columns == ("country",)
    assert lineage.segment("active_big_spenders").upstream == ("active",)


# segments/entities.yml of the example project, read by hand: the source columns of each feature.
# An aggregate reads its `from` key and time columns (the window, or `<= as_of`), its `where` and
# its `expr`; a derived feature reads what its macro arguments read; an entity column is itself.
_ORDERS = {"orders.customer_id", "orders.ordered_at"}
_COMPLETED = _ORDERS | {"orders.status"}
_REVENUE = _COMPLETED | {"orders.amount"}
_EVENTS = {"events.customer_id", "events.occurred_at", "events.event_type"}
_USERS = {"customers.account_id", "customers.signup_at"}
EXAMPLE_FEATURE_COLUMNS = {
    "customer": {
        "orders_30d": _ORDERS,
        "orders_90d": _ORDERS,
        "orders_365d": _ORDERS,
        "store_orders_365d": _ORDERS | {"orders.channel"},
        "refunds_365d": _ORDERS | {"orders.status"},
        "lifetime_revenue": _REVENUE,
        "revenue_90d": _REVENUE,
        "order_count": _COMPLETED,
        "first_order_at": _ORDERS,
        "last_order_at": _ORDERS,
        "days_since_last_order": _ORDERS,
        "sessions_30d": _EVENTS,
        "app_sessions_90d": _EVENTS | {"events.device"},
        "cart_adds_30d": _EVENTS,
        "support_tickets_90d": _EVENTS,
        "age": {"customers.birth_date"},  # age_from_birth_date('birth_date')
        "age_band": {"customers.birth_date"},  # age_band('age')
        "tenure_days": {"customers.signup_at"},
        "avg_order_value": _REVENUE,  # safe_divide(lifetime_revenue, order_count)
        # quintile(lifetime_revenue); the build breaks NTILE ties by the key, which therefore
        # decides who sits on a bucket boundary
        "revenue_quintile": _REVENUE | {"customers.customer_id"},
        "rfm_score": _REVENUE | {"customers.customer_id"},  # three NTILEs, same tie-break
        "lifecycle": _ORDERS | {"customers.signup_at"},  # signup_at, first/last_order_at
        # inputs of the standard KPI pack (segments/kpis.yml)
        "orders_60d": _ORDERS,
        "period_revenue": _REVENUE,
        "active_days": {"events.customer_id", "events.occurred_at"},  # any event type
        "sessions": _EVENTS,  # sessions_30d
        "active_now": _ORDERS,  # orders_30d > 0
        "active_before": _ORDERS,  # orders_60d - orders_30d > 0
    },
    "account": {
        "active_users": _USERS,
        "paid_seats": _USERS | {"customers.plan"},
        "new_users_90d": _USERS,
        "paid_seat_share": _USERS | {"customers.plan"},  # safe_divide(paid_seats, active_users)
    },
}
EXAMPLE_TIME_COLUMNS = {"customer": "customers.signup_at", "account": "accounts.created_at"}


def hand_derived_columns(compiled: CompiledProject, name: str) -> set[str]:
    """The table above, composed along the segment graph: what the segment's own `where` reads,
    what its ancestors' read, and the entity's `time` filter that every member passes."""
    segment = compiled.segments[name]
    entity = compiled.entities[segment.entity]
    features = EXAMPLE_FEATURE_COLUMNS[entity.name]
    table = entity.definition.table
    expected = {EXAMPLE_TIME_COLUMNS[entity.name]}
    for member in {name, *compiled.graph.ancestors(name)}:
        for column in compiled.segments[member].columns:
            expected |= features.get(column, {f"{table}.{column}"})
    return expected


def test_example_segments_read_exactly_the_hand_derived_columns(tmp_path: Path) -> None:
    if not example_ready():
        pytest.skip("the example project (segsql.yml, segments/) is not in the repository yet")
    compiled = compile_project(copy_project(REPO, tmp_path / "example"))
    features = {e.name: {f.name for f in e.features} for e in compiled.entities.values()}
    assert features == {e: set(f) for e, f in EXAMPLE_FEATURE_COLUMNS.items()}, (
        "the example's features changed: update EXAMPLE_FEATURE_COLUMNS by reading entities.yml"
    )
    lineage = Lineage(compiled)
    for name in compiled.segments:
        assert columns_of(lineage, name) == hand_derived_columns(compiled, name), name


def test_impact_of_a_column_is_every_segment_reading_it(starter: Path) -> None:
    lineage = Lineage(compile_project(starter))
    for column in ("orders.amount", "orders.ordered_at", "customers.country", "orders.order_id"):
        expected = [n for n, cols in STARTER_COLUMNS.items() if column in cols]
        table, name = column.split(".")
        assert lineage.segments_reading(SourceColumn(table, name)) == expected, column


# ---------------------------------------------------------------------------------------------
# 2. by the declarations


def test_every_source_column_is_a_declared_column(project: Path) -> None:
    compiled = compile_project(project)
    declared: dict[str, set[str]] = {}
    for table in compiled.project.tables.values():
        declared[table.name] = declared[table.relation] = set(table.column_names)
    lineage = Lineage(compiled)
    for name in compiled.segments:
        info = lineage.segment(name)
        assert info.source_columns, f"{name} reads no source column"
        for column in info.source_columns:
            assert column.column in declared.get(column.table, set()), f"{name}: {column}"


# ---------------------------------------------------------------------------------------------
# 3. by the data


def memberships(compiled: CompiledProject, null_column: SourceColumn | None) -> dict[str, set[str]]:
    """Members of every segment on in-memory DuckDB, with one source column set to NULL."""
    target = resolve_target(compiled.project.config, "duckdb")
    duck = DuckDBRunner(target, compiled.project.config.root)
    try:
        load_seeds(duck, compiled.project, only_missing=False)
        if null_column is not None:
            relation = compiled.project.tables[null_column.table].relation
            update = exp.update(relation, {null_column.column: exp.null()})
            duck.connection.execute(update.sql("duckdb"))
        duck.execute_all(deploy_statements(compiled, target))
        result = {}
        for name, segment in compiled.segments.items():
            key = compiled.entities[segment.entity].key
            rows = duck.query(exp.select(key).from_(target.relation(name)))
            result[name] = {str(row[0]) for row in rows}
        return result
    finally:
        duck.close()


def test_a_column_that_changes_members_is_in_their_lineage(project: Path) -> None:
    compiled = compile_project(project)
    lineage = Lineage(compiled)
    baseline = memberships(compiled, None)
    entity_keys = {
        (e.source_table, e.key) for e in compiled.entities.values() if e.source_table is not None
    }
    revealing = 0
    for table in compiled.project.tables.values():
        for column_name in table.column_names:
            if (table.name, column_name) in entity_keys:
                continue  # the key names members; NULL keys change identities, not selections
            column = SourceColumn(table.name, column_name)
            changed = memberships(compiled, column)
            for name, members in changed.items():
                if members != baseline[name]:
                    revealing += 1
                    assert column in lineage.segment(name).source_columns, (
                        f"NULLing {column} changes {name}, but its lineage omits it"
                    )
    assert revealing, "the seed data must make some segment depend on some column"


# ---------------------------------------------------------------------------------------------
# the command line


def segsql(project: Path, *args: str) -> str:
    result = runner.invoke(app, ["--project-dir", str(project), "lineage", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_output_lists_every_segment_with_its_columns(starter: Path) -> None:
    data = json.loads(segsql(starter, "--format", "json"))
    assert data["selected"] == list(STARTER_COLUMNS)
    for name, expected in STARTER_COLUMNS.items():
        entry = data["segments"][name]
        assert set(entry["source_columns"]) == expected
        assert entry["features"] == list(STARTER_FEATURES[name])
        assert entry["entity"] == "customer"


def test_text_output_is_a_tree_down_to_columns(starter: Path) -> None:
    text = segsql(starter, "active_in_europe")
    lines = text.splitlines()
    assert lines[0].startswith("active_in_europe (geographic, customer)")
    assert "columns: customers.country, orders.customer_id, orders.ordered_at" in text
    assert "macros: is_europe" in text
    nested = [line for line in lines if "active (behavioral, customer)" in line]
    assert len(nested) == 1 and nested[0].index("active") > 0, "parent is a nested node"


def test_column_impact_selects_only_the_readers(starter: Path) -> None:
    data = json.loads(segsql(starter, "--column", "orders.amount", "--format", "json"))
    assert data["selected"] == ["active_big_spenders"]
    # upstream closure: the reader and what it is built on, nothing else
    assert set(data["segments"]) == {"active_big_spenders", "active"}
    text = segsql(starter, "--column", "customers.country")
    assert text.startswith("active_in_europe")


def test_column_impact_of_an_unread_column_is_a_located_error(starter: Path) -> None:
    result = runner.invoke(
        app, ["--project-dir", str(starter), "lineage", "--column", "orders.order_id"]
    )
    assert result.exit_code == 2
    assert "no segment reads orders.order_id" in result.output
    assert "Traceback" not in result.output


def test_segment_impact_follows_descendants(starter: Path) -> None:
    data = json.loads(segsql(starter, "active", "--downstream", "--format", "json"))
    assert data["selected"] == ["active"]
    assert list(data["segments"]) == list(STARTER_COLUMNS)
    leaf = json.loads(segsql(starter, "active_in_europe", "--downstream", "--format", "json"))
    assert list(leaf["segments"]) == ["active_in_europe"]


# Data-flow edges of the starter project, by hand: column -> feature -> segment, parent -> child.
STARTER_EDGES = {
    ("column:customers.country", "feature:customer.country", ""),
    ("column:orders.amount", "feature:customer.lifetime_revenue", ""),
    ("column:orders.customer_id", "feature:customer.lifetime_revenue", ""),
    ("column:orders.ordered_at", "feature:customer.lifetime_revenue", ""),
    ("column:orders.customer_id", "feature:customer.orders_90d", ""),
    ("column:orders.ordered_at", "feature:customer.orders_90d", ""),
    ("feature:customer.orders_90d", "segment:active", ""),
    ("feature:customer.lifetime_revenue", "segment:active_big_spenders", ""),
    ("feature:customer.country", "segment:active_in_europe", ""),
    ("segment:active", "segment:active_big_spenders", "parent"),
    ("segment:active", "segment:active_in_europe", "parent"),
}


def node_id(node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node)


def test_mermaid_output_has_every_edge_and_labelled_node(starter: Path) -> None:
    text = segsql(starter, "--format", "mermaid")
    lines = text.splitlines()
    assert lines[0] == "graph LR"
    edges = {
        (m[1], m[3], m[2] or "")
        for line in lines
        if (m := re.fullmatch(r"  (\w+) -->(?:\|(\w+)\|)? (\w+)", line))
    }
    expected = {(node_id(a), node_id(b), label) for a, b, label in STARTER_EDGES}
    assert edges == expected
    labels = dict(re.findall(r'^  (\w+)[\[(]+"([^"]+)"', text, flags=re.M))
    nodes = {n for a, b, _ in STARTER_EDGES for n in (a, b)}
    assert labels == {node_id(n): n.partition(":")[2] for n in nodes}


def test_dot_output_has_every_edge_and_shaped_node(starter: Path) -> None:
    text = segsql(starter, "--format", "dot")
    assert text.startswith("digraph lineage {\n") and text.endswith("}\n")
    edges = {
        (a, b, label or "")
        for a, b, label in re.findall(
            r'^  "([^"]+)" -> "([^"]+)"(?: \[label="(\w+)"\])?;$', text, re.M
        )
    }
    assert edges == STARTER_EDGES
    shapes = dict(re.findall(r'^  "([^"]+)" \[shape=(\w+),', text, re.M))
    kinds = {"segment": "box", "feature": "ellipse", "column": "cylinder"}
    assert shapes == {n: kinds[n.partition(":")[0]] for a, b, _ in STARTER_EDGES for n in (a, b)}


def graph_edges(text: str) -> set[tuple[str, str]]:
    """(from, to) of `--format dot` output, nodes as `kind:name`."""
    return set(re.findall(r'^  "([^"]+)" -> "([^"]+)"', text, re.M))


def columns_reaching(edges: set[tuple[str, str]], node: str) -> set[str]:
    sources: dict[str, set[str]] = {}
    for a, b in edges:
        sources.setdefault(b, set()).add(a)
    found: set[str] = set()
    todo, seen = [node], {node}
    while todo:
        for upstream in sources.get(todo.pop(), set()):
            if upstream.startswith("column:"):
                found.add(upstream.removeprefix("column:"))
            elif upstream not in seen:
                seen.add(upstream)
                todo.append(upstream)
    return found


@pytest.mark.parametrize("selection", ["all", "each"])
def test_the_graph_leads_to_exactly_the_source_columns_of_each_segment(
    project: Path, selection: str
) -> None:
    """What the diagrams draw (mermaid and dot share their edges) agrees with the column lists,
    also on a graph of one segment's ancestors, and on its descendants alone (cut from its
    parents, where the entity's `time` filter is drawn on the segment itself)."""
    lineage = Lineage(compile_project(project))
    if selection == "all":
        edges = graph_edges(segsql(project, "--format", "dot"))
        for name in lineage.compiled.segments:
            assert columns_reaching(edges, f"segment:{name}") == columns_of(lineage, name), name
        return
    for name in list(lineage.compiled.segments)[:8]:
        ancestry = graph_edges(segsql(project, f"+{name}", "--format", "dot"))
        assert columns_reaching(ancestry, f"segment:{name}") == columns_of(lineage, name), name
        alone = graph_edges(segsql(project, name, "--downstream", "--format", "dot"))
        if lineage.compiled.graph.upstream(name):  # drawn without its parents: less, never more
            assert columns_reaching(alone, f"segment:{name}") <= columns_of(lineage, name), name


README = REPO / "README.md"
README_MERMAID = re.compile(
    r"`segsql lineage (?P<selector>[^`]*?) --format mermaid`[^`]*?\n```mermaid\n(?P<graph>.*?)```",
    re.S,
)


def test_readme_mermaid_lineage_is_what_the_command_prints_today(tmp_path: Path) -> None:
    if not example_ready():
        pytest.skip("the example project (segsql.yml, segments/) is not in the repository yet")
    found = README_MERMAID.search(README.read_text(encoding="utf-8"))
    assert found, (
        "README.md has no `segsql lineage ... --format mermaid` followed by a mermaid block"
    )
    example = copy_project(REPO, tmp_path / "example")
    printed = segsql(example, *found["selector"].split(), "--format", "mermaid")
    assert found["graph"] == printed, (
        "README.md's lineage is stale: paste the output of "
        f"`segsql lineage {found['selector']} --format mermaid` into its mermaid block"
    )
