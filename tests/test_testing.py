"""`segsql test`: unit tests with fixtures, data tests, invariants, JSON and JUnit output."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segsql.cli import app
from segsql.load import load_project
from segsql.scaffold import scaffold
from segsql.unit import run_unit_tests

pytest_plugins = ["pg_server"]
runner = CliRunner()


def segsql(project: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project-dir", str(project), *args])
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The `segsql init` starter: 5 customers, 6 orders, as_of 2024-06-30."""
    root = tmp_path / "shop"
    scaffold(root)
    return root


def add_file(project: Path, name: str, text: str) -> None:
    (project / "segments" / name).write_text(text, encoding="utf-8")


def test_init_project_passes_out_of_the_box(project: Path) -> None:
    code, output = segsql(project, "test", "--format", "json")
    assert code == 0, output
    report = json.loads(output)
    assert report["failed"] == 0
    kinds = {(r["kind"], r["segment"], r["name"]) for r in report["results"]}
    assert ("unit", *["active_means_an_order_in_the_last_90_days"] * 2) in kinds
    assert ("data", "active", "not_empty") in kinds
    assert ("invariant", "active_big_spenders", "subset of parent active") in kinds
    share = next(r for r in report["results"] if r["name"] == "max_share_of_parent(0.8)")
    # active = customers 1, 2, 4 (orders in the 90 days to 2024-06-30); in Europe: 1 (DE), 4 (GB)
    assert share["message"].startswith("66.7% of parent (2 of 3)")


FAILING_UNIT_TEST = """
unit_tests:
  - name: big_spenders_by_hand
    as_of: 2024-06-30
    given:
      customers:
        - {customer_id: 1, country: DE}
        - {customer_id: 2, country: US}
        - {customer_id: 3}
      orders:
        - {customer_id: 1, ordered_at: 2024-06-01, amount: 60}
        - {customer_id: 2, ordered_at: 2024-06-02 10:00:00, amount: 250}
        - {customer_id: 3, ordered_at: 2024-06-03, amount: 20}
    expect:
      active: [1, 2, 7]
      active_big_spenders:
        - {customer_id: 1, lifetime_revenue: 60}
      active_in_europe:
        - {customer_id: 1, orders_90d: 1, lifetime_revenue: 61, country: DE}
"""


def test_failing_unit_test_prints_a_readable_diff(project: Path) -> None:
    add_file(project, "unit.yml", FAILING_UNIT_TEST)
    [result] = run_unit_tests(
        load_project(project), [load_project(project).unit_tests["big_spenders_by_hand"]]
    )
    assert not result.passed
    # active is 1, 2, 3 (all ordered in the window): 7 is missing, 3 is unexpected;
    # big spenders (>= 100) is only 2; customer 1 spent 60, not 61.
    assert result.details == (
        "active: missing 1 (expected, not members): 7",
        "active: unexpected 1 (members, not expected): 3",
        "active_big_spenders: missing 1 (expected, not members): 1",
        "active_big_spenders: unexpected 1 (members, not expected): 2",
        "active_in_europe, member 1: 1 value(s) differ",
        "    column            expected  actual",
        "    lifetime_revenue  61        60.00",
    )
    code, output = segsql(project, "test", "--only", "unit")
    assert code == 1
    assert "active: missing 1 (expected, not members): 7" in output
    assert "1 passed, 1 failed" in output


def test_unit_tests_ignore_the_production_data_and_target(project: Path) -> None:
    """Fixtures replace the tables: the seed data (where 3 customers are active) is not read."""
    add_file(project, "unit.yml", FAILING_UNIT_TEST.replace("[1, 2, 7]", "[1, 2, 3]"))
    config = project / "segsql.yml"
    config.write_text(config.read_text().replace("default_target: local", "default_target: bq"))
    code, output = segsql(project, "test", "--only", "unit", "--format", "json")
    results = {r["name"]: r for r in json.loads(output)["results"]}
    assert code == 1  # big_spenders_by_hand still expects the wrong big spenders
    assert "active: " not in "\n".join(results["big_spenders_by_hand"]["details"])
    assert results["active_means_an_order_in_the_last_90_days"]["passed"]


def test_fixture_columns_are_checked_against_declared_tables(project: Path) -> None:
    add_file(
        project,
        "unit.yml",
        FAILING_UNIT_TEST.replace("{customer_id: 3}", "{customer_id: 3, contry: FR}"),
    )
    code, output = segsql(project, "test", "--only", "unit")
    assert code == 2
    assert "'contry' is not a column of table 'customers'" in output
    assert "did you mean 'country'" in output


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{customer_id: 3}",
            "{customer_id: 3, contry: FR}",
            "'contry' is not a column of table 'customers'",
        ),
        ("      orders:\n", "      ordrs:\n", "gives rows for unknown table 'ordrs'"),
        (
            "orders_90d: 1,",
            "orders_91d: 1,",
            "'orders_91d' is not a column or feature of entity 'customer'",
        ),
    ],
)
def test_validate_checks_unit_tests_without_running_them(
    project: Path, old: str, new: str, message: str
) -> None:
    """`validate` (the pre-commit hook) rejects what `segsql test` would, but runs no test: the
    unit test below fails when run, yet is valid as written."""
    add_file(project, "unit.yml", FAILING_UNIT_TEST)
    code, output = segsql(project, "validate")
    assert code == 0, output
    assert FAILING_UNIT_TEST.count(old) == 1
    add_file(project, "unit.yml", FAILING_UNIT_TEST.replace(old, new))
    code, output = segsql(project, "validate")
    assert code == 2, output
    assert "segments/unit.yml:" in output
    assert message in output


def _seed_rows(project: Path, name: str) -> list[dict[str, str]]:
    with (project / "data" / f"{name}.csv").open() as handle:
        return list(csv.DictReader(handle))


EXCLUSIVE = """
segments:
  - name: one_order_ever
    entity: customer
    exclusive: order_count
    where: lifetime_revenue > 0 and lifetime_revenue < 100
  - name: repeat_buyers
    entity: customer
    exclusive: order_count
    where: lifetime_revenue >= 100
  - name: everyone_with_revenue
    entity: customer
    exclusive: order_count
    where: lifetime_revenue > 0
    tests: [{min_size: 10}, {max_size: 4}]
"""


def test_violated_exclusive_group_lists_offending_members(project: Path) -> None:
    add_file(project, "stages.yml", EXCLUSIVE)
    code, output = segsql(project, "test", "--only", "data", "--format", "json")
    assert code == 1
    results = json.loads(output)["results"]
    # lifetime revenue up to 2024-06-30, computed from the seed rows in Python
    revenue: dict[str, float] = {}
    for order in _seed_rows(project, "orders"):
        if order["ordered_at"][:10] <= "2024-06-30":
            revenue[order["customer_id"]] = revenue.get(order["customer_id"], 0) + float(
                order["amount"]
            )
    small = sorted(k for k, v in revenue.items() if 0 < v < 100)
    big = sorted(k for k, v in revenue.items() if v >= 100)
    # segments run in name order, so each pair is reported on its first segment
    pairs = {r["name"]: r for r in results if r["segment"] == "everyone_with_revenue"}
    with_small = pairs["exclusive group order_count: no member shared with one_order_ever"]
    with_big = pairs["exclusive group order_count: no member shared with repeat_buyers"]
    assert with_small["details"] == [f"offending key: {k}" for k in small]
    assert with_big["details"] == [f"offending key: {k}" for k in big]
    assert not with_small["passed"] and not with_big["passed"]
    assert with_small["location"] == "segments/stages.yml:11"  # where the reported segment is
    [disjoint] = [
        r for r in results if r["segment"] == "one_order_ever" and "exclusive" in r["name"]
    ]
    assert disjoint["passed"]
    sizes = {r["name"]: r for r in results if r["segment"] == "everyone_with_revenue"}
    assert not sizes["min_size(10)"]["passed"] and sizes["max_size(4)"]["passed"]
    assert sizes["max_size(4)"]["message"].startswith(f"{len(revenue)} member(s)")


# Children of `active` (customers 1, 2, 4 at as_of; lifetime revenue 150, 45.50, 15): the two
# marked `exclusive: true` share customer 2; the named group under the same parent is disjoint,
# and would overlap the `true` siblings if the two groups were mixed up.
SIBLINGS = """
segments:
  - {name: small_spenders, parent: active, exclusive: true, where: lifetime_revenue < 100}
  - {name: not_tiny_spenders, parent: active, exclusive: true, where: lifetime_revenue >= 20}
  - {name: band_high, parent: active, exclusive: spend_band, where: lifetime_revenue >= 100}
  - {name: band_low, parent: active, exclusive: spend_band, where: lifetime_revenue < 100}
"""


def test_violated_exclusive_true_siblings_are_named(project: Path) -> None:
    add_file(project, "siblings.yml", SIBLINGS)
    code, output = segsql(project, "test", "--only", "data", "--format", "json")
    assert code == 1, output
    exclusive = [r for r in json.loads(output)["results"] if r["name"].startswith("exclusive")]
    failed = [r for r in exclusive if not r["passed"]]
    assert len(exclusive) == 2  # one pair per group: the groups are not mixed
    [failure] = failed
    pair = {failure["segment"], failure["name"].rsplit(" ", 1)[-1]}
    assert pair == {"small_spenders", "not_tiny_spenders"}
    assert failure["name"].startswith("exclusive group children of active: no member shared with")
    assert failure["details"] == ["offending key: 2"]
    assert failure["location"].startswith("segments/siblings.yml:")

    code, output = segsql(project, "test", "--only", "data")  # the table report names them too
    assert code == 1
    assert f"FAIL invariant {failure['segment']}: {failure['name']}" in output


def test_exclusive_true_needs_siblings_to_group(project: Path) -> None:
    add_file(
        project, "orphan.yml", "segments:\n  - {name: again, union: [active], exclusive: true}\n"
    )
    code, output = segsql(project, "validate")
    assert code == 2
    assert (
        "orphan.yml:2:47: error: 'exclusive: true' groups siblings under the same parent" in output
    )


def test_deployed_tables_refreshed_apart_break_child_within_parent(project: Path) -> None:
    """A child table rebuilt after its parent's table can hold members the parent does not."""
    segments = project / "segments" / "customers.yml"
    text = segments.read_text()
    text = text.replace(
        "    where: orders_90d > 0\n", "    where: orders_90d > 0\n    materialize: table\n"
    )
    text = text.replace(
        "    where: lifetime_revenue >= {{ big_spender_threshold() }}\n",
        "    where: lifetime_revenue >= {{ big_spender_threshold() }}\n    materialize: table\n",
    )
    segments.write_text(text)
    assert segsql(project, "run")[0] == 0
    assert segsql(project, "test", "--only", "data", "--deployed")[0] == 0
    # Later: customer 5 orders a lot, and only the child's table is refreshed.
    orders = project / "data" / "orders.csv"
    orders.write_text(orders.read_text() + "7,5,2024-06-25 10:00:00,900.00\n")
    assert segsql(project, "seed")[0] == 0
    assert segsql(project, "run", "--select", "active_big_spenders")[0] == 0
    code, output = segsql(project, "test", "--only", "data", "--deployed", "--format", "json")
    assert code == 1
    [broken] = [r for r in json.loads(output)["results"] if not r["passed"]]
    assert broken["name"] == "subset of parent active"
    assert broken["details"] == ["offending key: 5"]
    # evaluated inline, the current definitions agree with each other again
    assert segsql(project, "test", "--only", "data")[0] == 0


def test_a_junit_report_that_cannot_be_written_is_an_error_not_a_traceback(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "segsql.xml"
    folder.mkdir()  # a folder where the report should go
    result = runner.invoke(app, ["--project-dir", str(project), "test", "--junit-xml", str(folder)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"cannot write the JUnit report to {folder}" in result.output
    assert "name a file inside it" in result.output
    assert list(tmp_path.glob(".segsql.xml.*")) == []  # no temporary file left beside it


def test_junit_xml_is_parsed_back(project: Path, tmp_path: Path) -> None:
    add_file(project, "stages.yml", EXCLUSIVE)
    add_file(project, "unit.yml", FAILING_UNIT_TEST)
    report = tmp_path / "reports" / "segsql.xml"
    code, _ = segsql(project, "test", "--junit-xml", str(report))
    assert code == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    failures = root.findall("./testsuite/testcase/failure")
    assert int(root.get("tests", "")) == len(cases)
    assert int(root.get("failures", "")) == len(failures) == 4  # 1 unit, 1 size, 2 overlaps
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"segsql.unit", "segsql.data", "segsql.invariant"}
    unit = suites["segsql.unit"].find("testcase[@name='big_spenders_by_hand']")
    assert unit is not None and unit.get("file") == "segments/unit.yml"
    failure = unit.find("failure")
    assert failure is not None and "lifetime_revenue  61        60.00" in (failure.text or "")
    passing = suites["segsql.unit"].find(
        "testcase[@name='active_means_an_order_in_the_last_90_days']"
    )
    assert passing is not None and passing.find("failure") is None


def test_select_limits_unit_and_data_tests(project: Path) -> None:
    add_file(project, "stages.yml", EXCLUSIVE)
    code, output = segsql(project, "test", "--select", "active_in_europe", "--format", "json")
    assert code == 0, output
    results = json.loads(output)["results"]
    assert {r["segment"] for r in results} == {
        "active_in_europe",
        "active_means_an_order_in_the_last_90_days",
    }


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        ("[not_emtpy]", "unknown data test 'not_emtpy'"),
        ("[{min_size: many}]", "data test 'min_size' needs a non-negative number"),
    ],
)
def test_bad_data_tests_are_spec_errors(project: Path, tests: str, message: str) -> None:
    add_file(
        project, "bad.yml", f"segments:\n  - name: x\n    entity: customer\n    tests: {tests}\n"
    )
    code, output = segsql(project, "validate")
    assert code == 2
    assert message in output and "bad.yml:4" in output


def test_share_of_parent_needs_a_parent(project: Path) -> None:
    add_file(
        project,
        "bad.yml",
        "segments:\n  - name: x\n    entity: customer\n    tests: [{max_share_of_parent: 0.5}]\n",
    )
    code, output = segsql(project, "test", "--only", "data")
    assert code == 2
    assert "needs a parent" in output


def test_bigquery_project_is_unit_tested_on_duckdb(tmp_path: Path) -> None:
    """BigQuery SQL (COUNTIF, INT64, TIMESTAMP), a schema-qualified table and a file-path entity:
    all swapped for fixtures and transpiled to DuckDB; the BigQuery target is never contacted."""
    root = tmp_path / "bq"
    (root / "segments").mkdir(parents=True)
    (root / "segsql.yml").write_text(
        "name: bq\ndialect: bigquery\nvars: {as_of: '2024-06-30'}\n"
        "targets: {prod: {engine: bigquery, project: p, dataset: d}}\n"
    )
    (root / "segments" / "s.yml").write_text(
        """
tables:
  - name: orders
    table: raw.orders
    columns: {order_id: INT64, customer_id: INT64, ordered_at: TIMESTAMP, amount: NUMERIC}
entities:
  - name: customer
    table: exports/customers.csv
    key: customer_id
    columns: [customer_id, country, plan]   # no fixture row names plan: it is NULL
    features:
      - {name: big_orders, from: {table: orders, key: customer_id, time: ordered_at},
         expr: COUNTIF(amount > 100), default: 0}
      - {name: first_order, from: {table: orders, key: customer_id, time: ordered_at},
         expr: MIN(ordered_at)}
segments:
  - name: big_in_germany
    entity: customer
    where: big_orders >= 1 AND country = 'DE' AND plan IS NULL
unit_tests:
  - name: countif
    given:
      exports/customers.csv: [{customer_id: 1, country: DE}, {customer_id: 2, country: DE},
                              {customer_id: 3, country: US}]
      orders:
        - {customer_id: 1, ordered_at: "2024-06-01 10:00:00", amount: 150}
        - {customer_id: 2, ordered_at: "2024-06-01", amount: 50}
        - {customer_id: 3, ordered_at: "2024-06-01", amount: 500}
        - {customer_id: 2, ordered_at: "2024-07-01", amount: 999}
    expect:
      big_in_germany:
        - {customer_id: 1, big_orders: 1, first_order: "2024-06-01 10:00:00"}
"""
    )
    code, output = segsql(root, "test", "--format", "json", "--only", "unit")
    assert code == 0, output
    assert json.loads(output)["passed"] == 1
    spec = root / "segments" / "s.yml"
    spec.write_text(
        spec.read_text().replace(
            'first_order: "2024-06-01 10:00:00"', 'first_order: "2024-06-01 11:00:00"'
        )
    )
    code, output = segsql(root, "test", "--format", "json", "--only", "unit")
    assert code == 1
    [result] = json.loads(output)["results"]
    assert result["details"][0] == "big_in_germany, member 1: 1 value(s) differ"
    assert result["details"][2].split() == [
        "first_order",
        "2024-06-01",
        "11:00:00",
        "2024-06-01",
        "10:00:00+00",
    ]


SET_ALGEBRA = """
segments:
  - {name: big, entity: customer, where: "lifetime_revenue >= 100", materialize: table}
  - {name: europe, entity: customer, where: "{{ is_europe('country') }}", materialize: table}
  - {name: big_or_europe, union: [big, europe], materialize: table}
  - {name: europe_not_big, parent: europe, exclude: [big], materialize: table}
  - {name: big_and_europe, intersect: [big, europe], materialize: table}
"""


def test_deployed_union_and_exclude_that_drifted_are_reported(project: Path) -> None:
    add_file(project, "algebra.yml", SET_ALGEBRA)
    assert segsql(project, "run")[0] == 0
    code, output = segsql(project, "test", "--only", "data", "--deployed", "--format", "json")
    assert code == 0, output
    # customers 2 (US) and 3 (FR) become big spenders; only `big` is rebuilt
    orders = project / "data" / "orders.csv"
    orders.write_text(
        orders.read_text() + "7,2,2024-06-20 10:00:00,900.00\n8,3,2024-06-21 10:00:00,900.00\n"
    )
    assert segsql(project, "seed")[0] == 0
    assert segsql(project, "run", "--select", "big")[0] == 0
    code, output = segsql(project, "test", "--only", "data", "--deployed", "--format", "json")
    assert code == 1
    failed = {
        (r["segment"], r["name"]): r["details"]
        for r in json.loads(output)["results"]
        if not r["passed"]
    }
    # big is now {1, 2, 3}; the stale union {1, 3, 4} lacks 2; the stale {3, 4} still holds 3;
    # the stale intersection {1} lacks 3
    assert failed == {
        ("big_and_europe", "holds all of big & europe"): ["offending key: 3"],
        ("big_or_europe", "holds all of big, europe"): ["offending key: 2"],
        ("europe_not_big", "shares no member with excluded big"): ["offending key: 3"],
    }


def test_validate_checks_unit_tests(project: Path) -> None:
    add_file(
        project,
        "unit.yml",
        "unit_tests:\n  - name: t\n    given: {customers: [{customer_id: 1}]}\n    expect:\n      activ: [1]\n",
    )
    code, output = segsql(project, "validate")
    assert code == 2
    assert "unit.yml:5:7: error: unit test 't' expects members of unknown segment 'activ'" in output
    assert "did you mean 'active'" in output


def test_data_checks_agree_on_postgres(project: Path, pg_database: str) -> None:
    """The same check queries (EXCEPT / INTERSECT / UNION ASTs) give the same results on PostgreSQL."""
    add_file(project, "stages.yml", EXCLUSIVE)
    add_file(project, "algebra.yml", SET_ALGEBRA)
    env = {"SEGSQL_PG_DSN": pg_database}
    seeded = runner.invoke(app, ["--project-dir", str(project), "seed", "--target", "pg"], env=env)
    assert seeded.exit_code == 0, seeded.output

    def results(*target: str) -> list[tuple[str, str, bool, str, list[str]]]:
        args = ["--project-dir", str(project), "test", "--only", "data", "-f", "json", *target]
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output  # the exclusive group overlaps
        rows = json.loads(result.output)["results"]
        return [(r["segment"], r["name"], r["passed"], r["message"], r["details"]) for r in rows]

    on_postgres = results("--target", "pg")
    assert on_postgres == results()
    assert sum(not passed for _, _, passed, _, _ in on_postgres) == 3


def test_example_project_passes_its_tests(example_project: Path) -> None:
    code, output = segsql(example_project, "test", "--format", "json")
    assert code == 0, output
    results = json.loads(output)["results"]
    units = {r["name"] for r in results if r["kind"] == "unit"}
    assert {"lifecycle_stages_by_hand", "vip_threshold_follows_vars"} <= units
    exclusive = [r for r in results if r["name"].startswith("exclusive group lifecycle_stage")]
    assert len(exclusive) == 10  # five mutually exclusive stages: every pair checked
    assert any(r["kind"] == "data" for r in results)
