"""`segsql kpis`: every KPI of every segment in one query, checked against plain Python.

The fixture (tests/fixtures/kpi) is read twice: by segsql on DuckDB (and PostgreSQL), and here by
plain Python from the same CSV rows, which recomputes features, members and every KPI with exact
decimals. Ratios leave the query as DECIMAL(38, 9); Python rounds its exact ratios the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from typer.testing import CliRunner

from segsql.cli import app
from segsql.emit import feature_query, resolve_target
from segsql.kpis import (
    SHAPES,
    STANDARD_KPIS,
    STRUCTURAL,
    Shape,
    build_kpis,
    kpi_query,
    plan_kpis,
)
from segsql.pipeline import compile_project

pytest_plugins = ["pg_server"]

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kpi"
STARTER = Path(__file__).resolve().parent.parent / "segsql" / "templates" / "init"
AS_OF = dt.date(2024, 6, 30)
NINE = Decimal("0.000000001")


# ---------------------------------------------------------------------------------------------
# the independent computation


def _rows(name: str) -> list[dict[str, str]]:
    with (FIXTURE / "data" / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def _in_window(day: dt.date, days: int) -> bool:
    return AS_OF - dt.timedelta(days=days) < day <= AS_OF


def python_features() -> dict[int, dict[str, Any]]:
    customers = {int(r["customer_id"]): {"country": r["country"]} for r in _rows("customers")}
    for features in customers.values():
        features.update(order_count=0, lifetime_revenue=Decimal(0), period_revenue=Decimal(0))
        features.update(orders_30d=0, orders_60d=0, days=set(), sessions=0)
    for order in _rows("orders"):
        day, features = _day(order["ordered_at"]), customers[int(order["customer_id"])]
        if day > AS_OF:
            continue
        amount = Decimal(order["amount"])
        features["order_count"] += 1
        features["lifetime_revenue"] += amount
        if _in_window(day, 30):
            features["period_revenue"] += amount
            features["orders_30d"] += 1
        if _in_window(day, 60):
            features["orders_60d"] += 1
    for event in _rows("events"):
        day, features = _day(event["event_date"]), customers[int(event["customer_id"])]
        if _in_window(day, 30):
            features["days"].add(day)
            features["sessions"] += event["event_type"] == "session_start"
    for features in customers.values():
        features["active_days"] = len(features.pop("days"))
        features["active_now"] = features["orders_30d"] > 0
        features["active_before"] = features["orders_60d"] - features["orders_30d"] > 0
    return customers


SEGMENTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "buyers": lambda f: f["order_count"] > 0,
    "big_buyers": lambda f: f["order_count"] > 0 and f["lifetime_revenue"] >= 100,
    "big_buyers_de": lambda f: SEGMENTS["big_buyers"](f) and f["country"] == "DE",
    "europe": lambda f: f["country"] in ("DE", "FR", "GB"),
    "elsewhere": lambda f: f["country"] not in ("DE", "FR", "GB"),
    "nobody": lambda f: f["country"] == "XX",
}
PARENTS = {"big_buyers": "buyers", "big_buyers_de": "big_buyers"}


def ratio(numerator: Any, denominator: Any) -> Decimal | None:
    if numerator is None or denominator is None or Decimal(denominator) == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(NINE, rounding=ROUND_HALF_UP)


def python_kpis(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The formulas of docs/kpis.md, over the members' feature rows."""
    n = len(members)
    if n == 0:
        return {"size": 0}

    def total(name: str) -> Any:
        return sum(m[name] for m in members)

    def count(test: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for m in members if test(m))

    were_active = count(lambda m: m["active_before"])
    churned = count(lambda m: m["active_before"] and not m["active_now"])
    retained = count(lambda m: m["active_before"] and m["active_now"])
    revenue, orders = total("lifetime_revenue"), total("order_count")
    return {
        "size": n,
        "conversion_rate": ratio(count(lambda m: m["order_count"] > 0), n),
        "revenue": revenue,
        "average_order_value": ratio(revenue, orders),
        "purchase_frequency": ratio(orders, n),
        "clv_historic": ratio(revenue, n),
        "clv_predictive": ratio(total("period_revenue") * were_active, n * churned),
        "retention_rate": ratio(retained, were_active),
        "churn_rate": ratio(churned, were_active),
        "active_days_per_member": ratio(total("active_days"), n),
        "sessions_per_member": ratio(total("sessions"), n),
        "segment_value": ratio(total("period_revenue") * were_active, churned),
        "biggest_spend": max(m["lifetime_revenue"] for m in members),
        "revenue_per_order": ratio(revenue, orders),
    }


def expected_rows() -> dict[str, dict[str, Any]]:
    features = list(python_features().values())
    kpis = {"(all)": python_kpis(features)}
    for name, test in SEGMENTS.items():
        kpis[name] = python_kpis([f for f in features if test(f)])
    rows = {}
    for name, values in kpis.items():
        parent = None if name == "(all)" else kpis[PARENTS.get(name, "(all)")]
        row = dict(values)
        row["share_of_entity"] = ratio(values["size"], kpis["(all)"]["size"])
        row["share_of_parent"] = ratio(values["size"], parent["size"]) if parent else None
        for kpi, value in values.items():
            if kpi != "size":  # lift from the values as printed (9 decimals), as the query does
                row[f"lift_{kpi}"] = ratio(_q(value), _q(parent.get(kpi))) if parent else None
        rows[name] = row
    return rows


def _q(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(NINE)


# ---------------------------------------------------------------------------------------------
# helpers


def project(tmp_path: Path, source: Path = FIXTURE) -> Path:
    root = tmp_path / "project"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    return root


def cli(root: Path, *args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--project-dir", str(root), *args], env=env)
    assert result.exit_code == code, result.output
    return result.output


def csv_rows(text: str) -> dict[str, dict[str, Decimal | str | None]]:
    """CSV output -> segment: {column: Decimal, or text for names, None for empty}."""
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        rows[row["segment"]] = {k: _number(k, v) for k, v in row.items()}
    return rows


def _number(column: str, value: str) -> Decimal | str | None:
    if value == "":
        return None
    return value if column in ("entity", "segment", "parent") else Decimal(value)


# ---------------------------------------------------------------------------------------------
# tests


def test_every_kpi_of_every_segment_matches_plain_python(tmp_path: Path) -> None:
    got = csv_rows(cli(project(tmp_path), "kpis", "--format", "csv"))
    expected = expected_rows()
    assert list(got) == ["(all)", *SEGMENTS]  # baseline first, then dependency order
    for segment, row in expected.items():
        for column, value in row.items():
            assert got[segment][column] == value, (segment, column, got[segment][column], value)
    assert got["big_buyers"]["parent"] == "buyers" and got["buyers"]["parent"] is None
    # by hand: customers 1, 3, 4, 9 spent >= 100; only customer 1 of them is in DE
    assert got["big_buyers"]["size"] == 4 and got["big_buyers_de"]["size"] == 1
    assert got["nobody"]["size"] == 0 and got["nobody"]["revenue"] is None


def test_kpi_selection_and_json(tmp_path: Path) -> None:
    root = project(tmp_path)
    text = cli(root, "kpis", "--select", "big_buyers", "--kpis", "revenue,churn_rate", "-f", "csv")
    header = text.splitlines()[0].split(",")
    assert header[-4:] == ["revenue", "churn_rate", "lift_revenue", "lift_churn_rate"]
    got = csv_rows(text)
    assert list(got) == ["(all)", "big_buyers"]  # its parent is computed for the lift, not shown
    assert got["big_buyers"]["share_of_parent"] == Decimal("0.5")
    assert got["big_buyers"]["lift_revenue"] == ratio(
        Decimal("815.76"), expected_rows()["buyers"]["revenue"]
    )
    assert '"revenue": 815.76' in cli(
        root, "kpis", "-s", "big_buyers", "--kpis", "revenue", "-f", "json"
    )
    # segment value summed over an exclusive group: unknown (None) when one member's churn is 0
    splits = json.loads(cli(root, "kpis", "-s", "europe,elsewhere,buyers", "-f", "json"))["splits"]
    assert splits == [{"split": "region", "segments": 2, "segment_value": None}]
    assert "no KPI 'revenu'" in cli(root, "kpis", "--kpis", "revenu", code=2)


@pytest.mark.parametrize("shape", SHAPES)
def test_one_query_reads_each_source_as_often_as_the_feature_relation(
    tmp_path: Path, shape: Shape
) -> None:
    """Features computed once: adding 6 segments adds no scan of customers, orders or events."""
    compiled = compile_project(project(tmp_path))
    target = resolve_target(compiled.project.config, "local")
    [plan] = plan_kpis(compiled, list(compiled.segments), build_kpis(compiled))
    # the query as it runs: its pieces come printed (opaque leaves of the tree)
    query = sqlglot.parse_one(kpi_query(compiled, plan, target, shape).sql("duckdb"), "duckdb")
    features = feature_query(compiled.entities["customer"], target)

    def scans(tree: exp.Expr) -> list[str]:
        return sorted(
            t.name for t in tree.find_all(exp.Table) if t.name in ("customers", "orders", "events")
        )

    assert (
        scans(query)
        == scans(features)
        == ["customers", "events", "events", "orders", "orders", "orders"]
    )
    assert len(sqlglot.parse(query.sql("duckdb"), read="duckdb")) == 1


def test_compile_writes_kpis_sql_that_runs(tmp_path: Path) -> None:
    root = project(tmp_path)
    cli(root, "compile", "--all-targets")
    for target in ("local", "pg", "bq"):
        assert (root / "target" / "compiled" / target / "kpis.sql").is_file()
    text = (root / "target" / "compiled" / "local" / "kpis.sql").read_text()
    rows = duck_rows(root, text)
    expected = expected_rows()
    assert {s: r["revenue"] for s, r in rows.items()} == {
        s: r.get("revenue") for s, r in expected.items()
    }


def test_no_kpis_no_kpis_sql(tmp_path: Path) -> None:
    root = project(tmp_path, STARTER)
    cli(root, "compile")
    assert not (root / "target" / "compiled" / "local" / "kpis.sql").exists()


def duck_rows(root: Path, sql: str) -> dict[str, dict[str, Any]]:
    """Run SQL on an in-memory DuckDB holding the fixture's tables; rows by segment."""
    connection = duckdb.connect()
    for table in ("customers", "orders", "events"):
        path = (root / "data" / f"{table}.csv").as_posix()
        connection.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv_auto('{path}')")
    result = connection.execute(sql)
    names = [d[0] for d in result.description]
    return {row[1]: dict(zip(names, row, strict=True)) for row in result.fetchall()}


@pytest.mark.parametrize("shape", SHAPES)
def test_both_query_shapes_give_the_plain_python_numbers(tmp_path: Path, shape: Shape) -> None:
    root = project(tmp_path)
    compiled = compile_project(root)
    target = resolve_target(compiled.project.config, "local")
    [plan] = plan_kpis(compiled, list(compiled.segments), build_kpis(compiled))
    query = kpi_query(compiled, plan, target, shape)
    got = duck_rows(root, query.sql("duckdb"))
    for segment, row in expected_rows().items():
        for column, value in row.items():
            assert got[segment][column] == value, (shape, segment, column)
    materialized = [c.alias for c in query.ctes if c.args.get("materialized")]
    assert materialized == (["customer_features"] if shape == "union" else [])
    assert (query.find(exp.Unnest) is not None) == (shape == "unnest")


def test_each_engine_gets_its_shape(tmp_path: Path) -> None:
    """BigQuery has no MATERIALIZED CTEs (it would recompute the features per segment): unnest."""
    root = project(tmp_path)
    cli(root, "compile", "--all-targets")
    compiled_dir = root / "target" / "compiled"
    assert "customer_features AS MATERIALIZED" in (compiled_dir / "local" / "kpis.sql").read_text()
    assert "customer_features AS MATERIALIZED" in (compiled_dir / "pg" / "kpis.sql").read_text()
    bigquery = (compiled_dir / "bq" / "kpis.sql").read_text()
    assert "MATERIALIZED" not in bigquery and "CROSS JOIN UNNEST([" in bigquery


def _add_kpis(root: Path, text: str) -> None:
    (root / "segments" / "kpis.yml").write_text(text)


@pytest.mark.parametrize(
    ("kpis", "message"),
    [
        ("kpis: [standard]", "entity 'customer' does not have: conversion_rate needs order_count"),
        ("kpis: [retention_rate]", "retention_rate needs active_before, active_now"),
        ("kpis: [revenu]", "'revenu' is not a standard KPI"),
        ("kpis: [{name: r, expr: lifetime_revenue}]", "KPI 'r' must aggregate"),
        (
            "kpis: [{name: r, expr: sum(orders_90d) + lifetime_revenue}]",
            "reads 'lifetime_revenue' outside an aggregate",
        ),
        ("kpis: [{name: r, expr: sum(lifetime_revenu)}]", "unknown column 'lifetime_revenu'"),
        ("kpis: [{name: size, expr: count(*)}]", "KPI name 'size' is taken"),
        ("kpis: [{name: r, expr: sum(x), format: money}]", "'format' must be one of 3 values"),
        ("kpis: [{name: r, entity: shop, expr: count(*)}]", "unknown entity 'shop'"),
        ("kpis: [{name: r, expr: 'sum(orders_90d); select 1'}]", "single expression"),
    ],
)
@pytest.mark.parametrize("command", ["kpis", "validate"])
def test_kpi_spec_errors(tmp_path: Path, kpis: str, message: str, command: str) -> None:
    """`validate` builds the KPIs too: what would fail in `segsql kpis` fails there first."""
    root = project(tmp_path, STARTER)
    _add_kpis(root, kpis + "\n")
    output = cli(root, command, code=2)
    assert message in " ".join(output.split()), output
    assert "kpis.yml:1" in output  # located


def test_validate_counts_the_kpis_it_built(tmp_path: Path) -> None:
    root = project(tmp_path, STARTER)
    assert " KPIs" not in cli(root, "validate")  # none defined: nothing to build
    _add_kpis(root, "kpis: [revenue, {name: twice, expr: 'sum(lifetime_revenue) * 2'}]\n")
    assert "features, 2 KPIs (as_of" in cli(root, "validate")


def test_standard_kpis_by_name(tmp_path: Path) -> None:
    """The starter project has lifetime_revenue only: `revenue` and `clv_historic` work by name."""
    root = project(tmp_path, STARTER)
    _add_kpis(
        root,
        "kpis:\n  - revenue\n  - clv_historic\n  - {name: twice, expr: 'sum(lifetime_revenue) * 2'}\n",
    )
    got = csv_rows(cli(root, "kpis", "-f", "csv"))
    # starter data by hand, revenue to date: 1: 150, 2: 45.50, 3: 80, 4: 15 (5 customers)
    assert got["(all)"]["revenue"] == Decimal("290.50")
    assert got["(all)"]["twice"] == Decimal("581.00")
    assert got["(all)"]["clv_historic"] == Decimal("58.1")
    assert got["active"]["size"] == 3  # customers 1, 2, 4
    assert got["active"]["clv_historic"] == ratio(Decimal("210.50"), 3)


def test_a_project_kpi_replaces_the_standard_one_of_that_name(tmp_path: Path) -> None:
    root = project(tmp_path)
    _add_kpis(root, "kpis: [{name: revenue, expr: 'sum(lifetime_revenue) * 2'}]\n")
    got = csv_rows(cli(root, "kpis", "-f", "csv"))
    assert got["(all)"]["revenue"] == 2 * expected_rows()["(all)"]["revenue"]


def test_identical_numbers_on_postgres(tmp_path: Path, pg_database: str) -> None:
    root = project(tmp_path)
    env = {"SEGSQL_PG_DSN": pg_database}
    cli(root, "seed", "--target", "pg", env=env)
    on_pg = csv_rows(cli(root, "kpis", "--target", "pg", "-f", "csv", env=env))
    on_duck = csv_rows(cli(root, "kpis", "--target", "local", "-f", "csv"))
    assert on_pg == on_duck
    assert on_pg["europe"]["churn_rate"] == ratio(2, 3)


def test_bigquery_kpi_and_overlap_queries_pass_zetasql(tmp_path: Path) -> None:
    """BigQuery cannot run here: Google's own analyser resolves every name and type offline."""
    from segsql.bigquery_check import BigQueryAnalyzer, project_catalog
    from segsql.emit import to_sql
    from segsql.overlap import overlap_query, plan_overlap

    compiled = compile_project(project(tmp_path))
    target = resolve_target(compiled.project.config, "bq")
    [plan] = plan_kpis(compiled, list(compiled.segments), build_kpis(compiled))
    [pairs] = plan_overlap(compiled, list(compiled.segments))
    analyzer = BigQueryAnalyzer(project_catalog(compiled.project, target))
    try:
        assert analyzer.analyse(to_sql(kpi_query(compiled, plan, target), target)) is None
        assert analyzer.analyse(to_sql(overlap_query(compiled, pairs, target), target)) is None
        assert analyzer.analyse("SELECT no_such_column FROM customers") is not None
    finally:
        analyzer.close()


def example_project(tmp_path: Path) -> Path:
    """A copy of the example project (two entities, nested segments and set operations)."""
    root = tmp_path / "example"
    repo = Path(__file__).resolve().parent.parent
    root.mkdir()
    (root / "segsql.yml").write_text((repo / "segsql.yml").read_text())
    for folder in ("segments", "macros", "data"):
        shutil.copytree(repo / folder, root / folder)
    return root


def test_rows_in_tree_order_and_kpis_of_one_entity(tmp_path: Path) -> None:
    """Each row right under its parent, indented by `parent:` nesting; `--kpis revenue` is fine
    when only one of the two entities has it (the other keeps its sizes and shares)."""
    root = example_project(tmp_path)  # its segments/kpis.yml: revenue for customers only
    rows = list(csv.DictReader(io.StringIO(cli(root, "kpis", "--kpis", "revenue", "-f", "csv"))))
    customers = [r for r in rows if r["entity"] == "customer"]
    order = [r["segment"] for r in customers]
    by_name = {r["segment"]: r for r in customers}
    for row in customers[1:]:
        if row["parent"]:  # the parent comes first, and every row between is in its subtree
            start, end = order.index(row["parent"]), order.index(row["segment"])
            parent_depth = int(by_name[row["parent"]]["depth"])
            assert start < end and int(row["depth"]) == parent_depth + 1
            assert all(int(by_name[s]["depth"]) > parent_depth for s in order[start + 1 : end])
    assert order[order.index("active") + 1] in ("omnichannel_shoppers", "recent_buyers")
    assert by_name["vip_active_eu"]["depth"] == "4"  # all_customers > active > vip_active > it
    # intersect: [churned_customers, vip] has no parent: compared with the entity, not indented
    assert by_name["churned_vips"]["depth"] == "1"
    assert by_name["churned_vips"]["share_of_parent"] == by_name["churned_vips"]["share_of_entity"]
    accounts = [r for r in rows if r["entity"] == "account"]
    assert accounts and all(r["revenue"] == "" for r in accounts)
    assert "no KPI 'revenu' for 'account' or 'customer'" in cli(
        root, "kpis", "--kpis", "revenu", code=2
    )


EXAMPLE_KPIS = {
    "customer": [*STRUCTURAL, *STANDARD_KPIS, "refund_rate", "recent_revenue_share"],
    "account": [*STRUCTURAL, "users", "paid_seat_rate", "new_user_rate"],
}
REGIONS = ("eu_customers", "north_america", "latam")  # the example's `exclusive: region`


def test_the_example_shows_the_whole_standard_pack_and_its_own_kpis(tmp_path: Path) -> None:
    """The example's segments/kpis.yml: every standard KPI on customers, and the project's own
    on both entities. A column that is empty or zero in every row would mean a feature that is
    missing, misnamed or wrongly windowed on the bundled data."""
    data = json.loads(cli(example_project(tmp_path), "kpis", "-f", "json"))
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        rows.setdefault(row["entity"], []).append(row)
    for entity, names in EXAMPLE_KPIS.items():
        kpi_columns = [c for c in rows[entity][0] if c not in ("entity", "segment", "parent")]
        assert [c for c in kpi_columns if not c.startswith("lift_") and c != "depth"] == names
        for name in names:
            assert any(row[name] not in (None, 0) for row in rows[entity]), (entity, name)
    everyone = rows["customer"][0]
    assert everyone["segment"] == "(all)" and 0 < everyone["churn_rate"] < 1
    assert everyone["retention_rate"] + everyone["churn_rate"] == pytest.approx(1)
    # segment value summed over the disjoint regions; unknown for the lifecycle stages, because
    # nobody in new, at-risk or churned customers ordered in the previous period (no churn rate)
    splits = {s["split"]: s["segment_value"] for s in data["splits"]}
    regions = [r["segment_value"] for r in rows["customer"] if r["segment"] in REGIONS]
    assert len(regions) == 3 and splits["region"] == pytest.approx(sum(regions))
    assert splits["lifecycle_stage"] is None


def test_wide_tables_are_split_to_fit_the_terminal(tmp_path: Path) -> None:
    text = cli(project(tmp_path), "kpis", env={"COLUMNS": "80"})
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "KPIs on local as of 2024-06-30 (1/" in text
    assert any("sessions_per_member" in line for line in text.splitlines())
