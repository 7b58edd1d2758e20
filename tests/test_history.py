"""Segment history: snapshots, growth and flows on DuckDB, checked against hand-computed histories.

The fixture is a tiny lifecycle project (active / lapsed / prospect, and `repeat` under active)
over four customers and six orders. The expected memberships are computed in plain Python from
the same rows (`expected_members`), and the key dates are also spelled out by hand.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlglot import exp
from typer.testing import CliRunner

from segsql.cli import app
from segsql.emit import resolve_target
from segsql.errors import ExecutionError, SpecError
from segsql.history import (
    Compile,
    Every,
    _unique_keys,
    backfill,
    compiler_for,
    flows,
    growth,
    history_ddl,
    kpi_trend,
    plan_snapshot,
    snapshot_dates,
    snapshot_statements,
)
from segsql.history_plot import render_svg, series_of
from segsql.load import load_project
from segsql.postgres import PostgresRunner, load_seeds_postgres
from segsql.run import DuckDBRunner, Runner, load_seeds
from segsql.running import RunningAggregates

pytest_plugins = ["pg_server"]  # the `pg_database` fixture: a fresh database on a real server

D = dt.date
WINDOW_DAYS = 30
SEGMENTS = ("active", "lapsed", "prospect", "repeat")
MONTH_ENDS = [D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 31), D(2024, 4, 30)]

CUSTOMERS = [  # customer_id, signup_at
    (1, D(2023, 6, 1)),
    (2, D(2023, 6, 1)),
    (3, D(2024, 2, 10)),  # does not exist before 2024-02-10
    (4, D(2023, 1, 1)),  # never orders
]
ORDERS = [  # order_id, customer_id, ordered_at, code
    (1, 1, D(2024, 1, 1), "1"),
    (2, 1, D(2024, 3, 15), "2"),
    (3, 2, D(2023, 12, 20), "3"),
    (4, 3, D(2024, 2, 20), "4"),
    (5, 3, D(2024, 2, 25), "5"),
    (6, 2, D(2024, 4, 10), "6"),
]

SEGMENTS_YML = """
tables:
  - name: customers
    columns: {customer_id: KEYTYPE, signup_at: date}
  - name: orders
    columns: {order_id: bigint, customer_id: KEYTYPE, ordered_at: date, code: varchar}
entities:
  - name: customer
    table: customers
    key: customer_id
    time: signup_at
    features:
      - name: recent_orders
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(*)
        window: 30 days
        default: 0
      - name: lifetime_orders
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(*)
        default: 0
      - name: code_total
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: sum(cast(code as integer))
        default: 0
segments:
  - name: active
    entity: customer
    kind: lifecycle
    where: recent_orders > 0
  - name: lapsed
    entity: customer
    kind: lifecycle
    where: [lifetime_orders > 0, recent_orders = 0]
  - name: prospect
    entity: customer
    kind: lifecycle
    where: [lifetime_orders = 0, code_total = 0]  # code_total: read, so bad codes fail a date
  - name: repeat
    parent: active
    where: lifetime_orders >= 2
"""

FROZEN_YML = """
segments:
  - name: campaign
    entity: customer
    where: recent_orders > 0
    freeze: 2024-02-29
  - name: campaign_repeat
    parent: campaign
    where: lifetime_orders >= 2
  - name: active_outside_campaign
    parent: active
    exclude: [campaign]
"""


# ---------------------------------------------------------------------------------------------
# the fixture project and its expected history, in plain Python


def key_of(customer: int, key_type: str) -> int | str:
    return customer if key_type == "bigint" else f"c{customer}"


def write_project(
    root: Path,
    key_type: str = "bigint",
    orders: list[tuple[int, int, dt.date, str]] | None = None,
    frozen: bool = False,
) -> Path:
    (root / "segments").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "segsql.yml").write_text(
        "name: hist\ndialect: duckdb\nvars: {as_of: '2024-04-30'}\nseeds: data\n"
        "targets:\n  local: {engine: duckdb, path: hist.duckdb, schema: segments}\n"
        "default_target: local\n"
    )
    (root / "segments" / "lifecycle.yml").write_text(SEGMENTS_YML.replace("KEYTYPE", key_type))
    if frozen:
        (root / "segments" / "frozen.yml").write_text(FROZEN_YML)
    write_seeds(root, key_type, ORDERS if orders is None else orders)
    return root


def write_seeds(root: Path, key_type: str, orders: list[tuple[int, int, dt.date, str]]) -> None:
    customers = "".join(f"{key_of(c, key_type)},{day}\n" for c, day in CUSTOMERS)
    (root / "data" / "customers.csv").write_text("customer_id,signup_at\n" + customers)
    rows = "".join(f"{o},{key_of(c, key_type)},{day},{code}\n" for o, c, day, code in orders)
    (root / "data" / "orders.csv").write_text("order_id,customer_id,ordered_at,code\n" + rows)


def expected_members(day: dt.date, orders: list[tuple[int, int, dt.date, str]] = ORDERS) -> dict:
    """segment -> set of customers on `day`, straight from the definitions above."""
    members: dict[str, set[int]] = {name: set() for name in SEGMENTS}
    start = day - dt.timedelta(days=WINDOW_DAYS)
    for customer, signup in CUSTOMERS:
        if signup > day:
            continue
        mine = [when for _, c, when, _ in orders if c == customer and when <= day]
        recent = sum(1 for when in mine if when > start)
        if recent > 0:
            members["active"].add(customer)
            if len(mine) >= 2:
                members["repeat"].add(customer)
        elif mine:
            members["lapsed"].add(customer)
        else:
            members["prospect"].add(customer)
    return members


def expected_rows(days: list[dt.date], key_type: str = "bigint") -> set[tuple[str, str, dt.date]]:
    return {
        (segment, str(key_of(c, key_type)), day)
        for day in days
        for segment, customers in expected_members(day).items()
        for c in customers
    }


# ---------------------------------------------------------------------------------------------
# helpers


def open_project(root: Path) -> tuple[DuckDBRunner, Callable[[dt.date], object]]:
    project = load_project(root)
    runner = DuckDBRunner(resolve_target(project.config, None), root)
    load_seeds(runner, project, only_missing=False)
    return runner, compiler_for(project, {}, runner)


def snapshot(root: Path, days: list[dt.date], select: list[str] | None = None) -> None:
    runner, compile_at = open_project(root)
    try:
        backfill(runner, compile_at, days, select)  # type: ignore[arg-type]
    finally:
        runner.close()


def history_rows(root: Path) -> set[tuple[str, str, dt.date]]:
    """(segment, key, as_of) of every membership recorded, after checking the intervals."""
    members = member_rows(root)
    check_intervals(root, members)
    return members


def member_rows(root: Path) -> set[tuple[str, str, dt.date]]:
    with duckdb.connect(str(root / "hist.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT segment, entity_key, as_of FROM segments.segment_members")
        found = rows.fetchall()
    assert len(found) == len(set(found)), "a membership is recorded twice"
    return {(s, k, d) for s, k, d in found}


def history_count(root: Path) -> int:
    """Rows of the members view (one per segment, key and logged date), after checking that the
    stored intervals are well formed (`check_intervals`)."""
    return len(history_rows(root))


def stored_intervals(root: Path) -> list[tuple[str, str, dt.date, dt.date | None]]:
    with duckdb.connect(str(root / "hist.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT segment, entity_key, valid_from, valid_to FROM segments.segment_history"
        )
        return [(s, k, a, b) for s, k, a, b in rows.fetchall()]


def check_intervals(root: Path, members: set[tuple[str, str, dt.date]]) -> None:
    """The stored form is exactly the maximal intervals of the logged memberships: every bound
    is a logged date of its segment, valid_to is the first logged date without the key, and no
    two intervals of a key touch or overlap. (Rebuilt here from the members, so any other set of
    rows, duplicated, split or stale, fails.)"""
    with duckdb.connect(str(root / "hist.duckdb"), read_only=True) as con:
        log = con.execute("SELECT segment, as_of FROM segments.segment_snapshots").fetchall()
    dates: dict[str, list[dt.date]] = {}
    for segment, day in sorted(log):
        dates.setdefault(segment, []).append(day)
    assert intervals_of(members, dates) == sorted(stored_intervals(root), key=str)


def intervals_of(
    members: set[tuple[str, str, dt.date]], dates: dict[str, list[dt.date]]
) -> list[tuple[str, str, dt.date, dt.date | None]]:
    """The maximal validity intervals of (segment, key, date) memberships over each segment's
    logged dates, in plain Python."""
    out = []
    keys = {(s, k) for s, k, _ in members}
    for segment, key in keys:
        start = None
        for day in dates[segment]:
            member = (segment, key, day) in members
            if member and start is None:
                start = day
            elif not member and start is not None:
                out.append((segment, key, start, day))
                start = None
        if start is not None:
            out.append((segment, key, start, None))
    return sorted(out, key=str)


def logged_dates(root: Path) -> set[tuple[str, dt.date]]:
    with duckdb.connect(str(root / "hist.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT segment, as_of FROM segments.segment_snapshots").fetchall()
        return {(s, d) for s, d in rows}


def cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--project-dir", str(root), *args])
    return result.exit_code, result.stdout


def cli_error(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--project-dir", str(root), *args])
    return result.exit_code, result.stderr


# ---------------------------------------------------------------------------------------------
# dates


def test_snapshot_dates_steps_and_clamps_months() -> None:
    assert snapshot_dates(D(2024, 1, 31), D(2024, 4, 30), Every.month) == MONTH_ENDS
    assert snapshot_dates(D(2024, 1, 1), D(2024, 1, 15), Every.week) == [
        D(2024, 1, 1),
        D(2024, 1, 8),
        D(2024, 1, 15),
    ]
    assert snapshot_dates(D(2024, 2, 28), D(2024, 3, 1), Every.day) == [
        D(2024, 2, 28),
        D(2024, 2, 29),
        D(2024, 3, 1),
    ]
    with pytest.raises(SpecError):
        snapshot_dates(D(2024, 2, 1), D(2024, 1, 1), Every.day)


# ---------------------------------------------------------------------------------------------
# snapshots


def test_hand_computed_month_ends(tmp_path: Path) -> None:
    """The four month ends, worked out by hand (30-day window: (as_of - 30 days, as_of])."""
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    by_hand = {
        D(2024, 1, 31): {"lapsed": {1, 2}, "prospect": {4}},  # customer 3 does not exist yet
        D(2024, 2, 29): {"active": {3}, "repeat": {3}, "lapsed": {1, 2}, "prospect": {4}},
        D(2024, 3, 31): {"active": {1}, "repeat": {1}, "lapsed": {2, 3}, "prospect": {4}},
        D(2024, 4, 30): {"active": {2}, "repeat": {2}, "lapsed": {1, 3}, "prospect": {4}},
    }
    expected = {
        (segment, str(c), day)
        for day, members in by_hand.items()
        for segment, customers in members.items()
        for c in customers
    }
    assert history_rows(root) == expected == expected_rows(MONTH_ENDS)
    # every (segment, date) is logged, including empty ones (active on 2024-01-31)
    assert logged_dates(root) == {(s, d) for s in SEGMENTS for d in MONTH_ENDS}


def test_window_boundary_entry_and_exit(tmp_path: Path) -> None:
    """Customer 1's order of 2024-01-01 is in the window on 01-30 and out of it on 01-31."""
    root = write_project(tmp_path)
    days = [D(2024, 1, 30), D(2024, 1, 31)]
    snapshot(root, days)
    rows = history_rows(root)
    assert ("active", "1", D(2024, 1, 30)) in rows
    assert ("active", "1", D(2024, 1, 31)) not in rows
    assert ("lapsed", "1", D(2024, 1, 31)) in rows
    assert rows == expected_rows(days)


@pytest.mark.parametrize("key_type", ["bigint", "varchar"])
def test_int_and_string_keys(tmp_path: Path, key_type: str) -> None:
    root = write_project(tmp_path, key_type=key_type)
    snapshot(root, MONTH_ENDS)
    assert history_rows(root) == expected_rows(MONTH_ENDS, key_type)


def test_backfill_equals_single_date_snapshots(tmp_path: Path) -> None:
    days = snapshot_dates(D(2024, 1, 31), D(2024, 12, 31), Every.month)
    assert len(days) == 12
    backfilled = write_project(tmp_path / "backfill")
    snapshot(backfilled, days)
    one_by_one = write_project(tmp_path / "single")
    for day in reversed(days):  # order does not matter
        snapshot(one_by_one, [day])
    assert history_rows(backfilled) == history_rows(one_by_one) == expected_rows(days)


def test_a_key_twice_in_the_entity_table_is_one_member_in_a_backfill(tmp_path: Path) -> None:
    """A backfill's masks group a key's rows unless no key is in the entity table twice (the
    check `_unique_keys` makes once per entity). Customer 3 is listed again, signed up earlier:
    it exists from then, and is one member however many of its rows are."""
    days = snapshot_dates(D(2024, 1, 7), D(2024, 3, 31), Every.week)
    roots = {name: write_project(tmp_path / name) for name in ("backfill", "single")}
    for root in roots.values():
        with (root / "data" / "customers.csv").open("a") as seeds:
            seeds.write("3,2024-01-15\n")
    snapshot(roots["backfill"], days)
    for day in days:
        snapshot(roots["single"], [day])
    assert history_rows(roots["backfill"]) == history_rows(roots["single"])
    assert ("prospect", "3", D(2024, 1, 21)) in history_rows(roots["backfill"])
    for root, unique in ((roots["backfill"], False), (write_project(tmp_path / "once"), True)):
        runner, compile_at = open_project(root)
        try:
            entity = compile_at(days[0]).entities["customer"]  # type: ignore[attr-defined]
            assert _unique_keys(runner, entity) is unique
        finally:
            runner.close()


def test_a_backfill_checkpoints_once_and_restores_the_threshold(tmp_path: Path) -> None:
    """Checkpoints are deferred to the end of a backfill (see `_deferred_checkpoints`): the
    dates are all in the database file afterwards, and the connection's setting is as before."""
    root = write_project(tmp_path)
    runner, compile_at = open_project(root)
    setting = "SELECT current_setting('checkpoint_threshold')"
    try:
        runner.connection.execute("SET checkpoint_threshold = '8MiB'")
        backfill(runner, compile_at, MONTH_ENDS, None)  # type: ignore[arg-type]
        assert runner.connection.execute(setting).fetchone() == ("8.0 MiB",)
    finally:
        runner.close()
    wal = root / "hist.duckdb.wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert history_rows(root) == expected_rows(MONTH_ENDS)


def test_rerun_replaces_and_never_duplicates(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    first = history_rows(root)
    count = history_count(root)
    snapshot(root, MONTH_ENDS)
    snapshot(root, [D(2024, 3, 31)])
    assert history_rows(root) == first
    assert history_count(root) == count == len(first)
    # late data for March: re-running 03-31 replaces that date only
    late = [*ORDERS, (7, 4, D(2024, 3, 30), "7")]
    write_seeds(root, "bigint", late)
    snapshot(root, [D(2024, 3, 31)])
    rows = history_rows(root)
    assert ("active", "4", D(2024, 3, 31)) in rows
    assert ("prospect", "4", D(2024, 3, 31)) not in rows
    assert {r for r in rows if r[2] != D(2024, 3, 31)} == {
        r for r in first if r[2] != D(2024, 3, 31)
    }
    assert history_count(root) == len(rows)


def test_crash_mid_backfill_keeps_recorded_dates(tmp_path: Path) -> None:
    """A date that fails (bad data from 2024-03-15 on) leaves every other date as it was."""
    root = write_project(tmp_path)
    snapshot(root, [D(2024, 3, 31)])  # recorded while the data was still good
    before_march = {r for r in history_rows(root) if r[2] == D(2024, 3, 31)}
    poisoned = [(o, c, day, "x" if o == 2 else code) for o, c, day, code in ORDERS]
    write_seeds(root, "bigint", poisoned)
    with pytest.raises(ExecutionError):
        snapshot(root, MONTH_ENDS)
    rows = history_rows(root)
    # dates before the failure are recorded, the failing date is unchanged, later ones absent
    assert {r for r in rows if r[2] < D(2024, 3, 1)} == expected_rows(MONTH_ENDS[:2])
    assert {r for r in rows if r[2] == D(2024, 3, 31)} == before_march
    assert not any(r[2] == D(2024, 4, 30) for r in rows)
    assert (("active", D(2024, 4, 30))) not in logged_dates(root)


def test_crash_on_fresh_history_leaves_failing_date_absent(tmp_path: Path) -> None:
    poisoned = [(o, c, day, "x" if o == 2 else code) for o, c, day, code in ORDERS]
    root = write_project(tmp_path, orders=poisoned)
    code, _ = cli(
        root, "snapshot", "--from", "2024-01-31", "--to", "2024-04-30", "--every", "month"
    )
    assert code == 1
    assert history_rows(root) == expected_rows(MONTH_ENDS[:2], "bigint")
    assert {d for _, d in logged_dates(root)} == set(MONTH_ENDS[:2])


def test_select_records_only_selected_segments(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS, ["active+"])
    assert {s for s, _, _ in history_rows(root)} == {"active", "repeat"}
    assert {s for s, _ in logged_dates(root)} == {"active", "repeat"}


# ---------------------------------------------------------------------------------------------
# growth


def test_growth_by_hand(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    runner, _ = open_project(root)
    try:
        rows = growth(runner, ["active", "lapsed"], None, None)
        ranged = growth(runner, ["lapsed"], D(2024, 3, 1), D(2024, 4, 30))
    finally:
        runner.close()
    table = [
        (g.segment, g.as_of, g.size, g.previous_size, g.entered, g.exited, g.retained, g.net_growth)
        for g in rows
    ]
    assert table == [
        ("active", D(2024, 1, 31), 0, None, None, None, None, None),
        ("active", D(2024, 2, 29), 1, 0, 1, 0, 0, 1),
        ("active", D(2024, 3, 31), 1, 1, 1, 1, 0, 0),  # 1 came, 3 left
        ("active", D(2024, 4, 30), 1, 1, 1, 1, 0, 0),  # 2 came, 1 left
        ("lapsed", D(2024, 1, 31), 2, None, None, None, None, None),
        ("lapsed", D(2024, 2, 29), 2, 2, 0, 0, 2, 0),
        ("lapsed", D(2024, 3, 31), 2, 2, 1, 1, 1, 0),
        ("lapsed", D(2024, 4, 30), 2, 2, 1, 1, 1, 0),
    ]
    assert [g.growth_rate for g in rows] == [None, None, 0.0, 0.0, None, 0.0, 0.0, 0.0]
    # a range still compares its first date with the snapshot before it
    assert [(g.previous_as_of, g.as_of, g.entered) for g in ranged] == [
        (D(2024, 2, 29), D(2024, 3, 31), 1),
        (D(2024, 3, 31), D(2024, 4, 30), 1),
    ]


def test_growth_matches_python_over_history(tmp_path: Path) -> None:
    """For every segment and pair of consecutive weeks, the SQL agrees with set arithmetic."""
    root = write_project(tmp_path)
    days = snapshot_dates(D(2024, 1, 5), D(2024, 5, 3), Every.week)
    snapshot(root, days)
    runner, _ = open_project(root)
    try:
        rows = growth(runner, list(SEGMENTS), None, None)
    finally:
        runner.close()
    by_key = {(g.segment, g.as_of): g for g in rows}
    for segment in SEGMENTS:
        for previous, day in itertools.pairwise(days):
            before, now = expected_members(previous)[segment], expected_members(day)[segment]
            g = by_key[(segment, day)]
            assert (g.size, g.previous_size) == (len(now), len(before))
            assert (g.entered, g.exited, g.retained) == (
                len(now - before),
                len(before - now),
                len(now & before),
            )
            rate = (len(now) - len(before)) / len(before) if before else None
            assert g.growth_rate == rate


def test_growth_cli_formats_and_plot(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    code, _ = cli(
        root, "snapshot", "--from", "2024-01-31", "--to", "2024-04-30", "--every", "month"
    )
    assert code == 0
    code, text = cli(root, "growth", "active", "--format", "json")
    assert code == 0
    data = json.loads(text)
    assert [(r["as_of"], r["size"], r["entered"]) for r in data] == [
        ("2024-01-31", 0, None),
        ("2024-02-29", 1, 1),
        ("2024-03-31", 1, 1),
        ("2024-04-30", 1, 1),
    ]
    code, text = cli(root, "growth", "lapsed", "--format", "csv", "--from", "2024-04-01")
    assert text.splitlines() == [
        "segment,previous_as_of,as_of,size,previous_size,entered,exited,retained,net_growth,growth_rate",
        "lapsed,2024-03-31,2024-04-30,2,2,1,1,1,0,0.0",
    ]
    svg = tmp_path / "growth.svg"
    code, _ = cli(root, "growth", "--plot", str(svg), "--format", "csv")
    assert code == 0
    text = svg.read_text()
    assert text.startswith("<svg") and text.count("<polyline") == len(SEGMENTS)
    png = tmp_path / "growth.png"
    code, _ = cli(root, "growth", "--plot", str(png), "--format", "csv")
    assert code == 0
    with Image.open(png) as image:  # the same chart, drawn at twice the SVG's size
        root_element = ElementTree.fromstring(text)
        width, height = (int(root_element.get(side) or 0) for side in ("width", "height"))
        assert (image.format, image.size) == ("PNG", (2 * width, 2 * height))
    code, output = cli_error(root, "growth", "--plot", str(tmp_path / "g.gif"))
    assert code == 2 and "write a .svg or a .png file" in output
    assert not (tmp_path / "g.gif").exists()


def test_an_unknown_plot_format_is_refused_before_any_query(tmp_path: Path) -> None:
    root = write_project(tmp_path)  # no history yet: a query would fail with exit code 1
    code, output = cli_error(root, "growth", "--plot", str(tmp_path / "g.pdf"))
    assert code == 2 and "--plot growth.png" in output


def test_growth_without_history_is_a_runtime_error(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    code, _ = cli(root, "growth")
    assert code == 1


def test_svg_points_scale_with_sizes() -> None:
    from segsql.history import Growth

    rows = [
        Growth("a", None, D(2024, 1, 1), 0, None, None, None, None, None, None),
        Growth("a", None, D(2024, 1, 11), 10, None, None, None, None, None, None),
    ]
    svg = render_svg(series_of(rows))
    # x spans the plot width, y goes from the bottom axis (0) to the top (axis max 10)
    assert 'points="70,350 580,30"' in svg


def test_svg_grows_to_hold_the_legend_of_many_segments() -> None:
    from segsql.history import Growth

    rows = [
        Growth(f"segment_{i}", None, D(2024, 1, d), i, None, None, None, None, None, None)
        for i in range(40)
        for d in (1, 8)
    ]
    root = ElementTree.fromstring(render_svg(series_of(rows)))
    height = float(root.get("height") or 0)
    legend = [
        t for t in root.iter("{http://www.w3.org/2000/svg}text") if "segment_39" in (t.text or "")
    ]
    assert legend and float(legend[0].get("y") or 0) < height  # the 40th legend line is drawn


# ---------------------------------------------------------------------------------------------
# flows


def test_flows_between_lifecycle_stages(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    runner, _ = open_project(root)
    stages = ["active", "lapsed", "prospect"]
    try:
        march_april = flows(runner, stages, D(2024, 3, 31), D(2024, 4, 30))
        jan_feb = flows(runner, stages, D(2024, 1, 31), D(2024, 2, 29))
        active_only = flows(runner, ["active"], D(2024, 2, 29), D(2024, 3, 31))
    finally:
        runner.close()
    assert march_april.counts == {
        ("active", "lapsed"): 1,  # customer 1
        ("lapsed", "active"): 1,  # customer 2
        ("lapsed", "lapsed"): 1,  # customer 3
        ("prospect", "prospect"): 1,
    }
    assert jan_feb.counts == {
        (None, "active"): 1,  # customer 3 signed up and ordered: entered from none
        ("lapsed", "lapsed"): 2,
        ("prospect", "prospect"): 1,
    }
    assert active_only.counts == {("active", None): 1, (None, "active"): 1}


def test_flows_cli_and_missing_snapshot(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    code, text = cli(
        root, "flows", "--from", "2024-03-31", "--to", "2024-04-30", "--format", "json"
    )
    assert code == 0
    (matrix,) = json.loads(text)  # default: the siblings active/lapsed/prospect (repeat is alone)
    assert matrix["segments"] == ["active", "lapsed", "prospect"]
    moved = {(f["from"], f["to"]): f["members"] for f in matrix["flows"] if f["members"]}
    assert moved == {
        ("active", "lapsed"): 1,
        ("lapsed", "active"): 1,
        ("lapsed", "lapsed"): 1,
        ("prospect", "prospect"): 1,
    }
    code, _ = cli(root, "flows", "--from", "2024-03-30", "--to", "2024-04-30")
    assert code == 2


# ---------------------------------------------------------------------------------------------
# freeze


def test_freeze_keeps_membership_of_freeze_date(tmp_path: Path) -> None:
    root = write_project(tmp_path, frozen=True)
    snapshot(root, MONTH_ENDS[2:])  # the freeze date (02-29) is recorded first, on its own
    rows = history_rows(root)
    frozen = {(s, k, d) for s, k, d in rows if s.startswith("campaign")}
    assert frozen == {
        ("campaign", "3", D(2024, 2, 29)),  # only the frozen segment is recorded on its date
        ("campaign", "3", D(2024, 3, 31)),  # 3 is no longer active, but the campaign is frozen
        ("campaign_repeat", "3", D(2024, 3, 31)),
        ("campaign", "3", D(2024, 4, 30)),
        ("campaign_repeat", "3", D(2024, 4, 30)),
    }
    # late data for February does not change a recorded freeze, even re-running its date
    write_seeds(root, "bigint", [*ORDERS, (7, 4, D(2024, 2, 28), "7")])
    snapshot(root, [D(2024, 2, 29), D(2024, 4, 30)])
    rows = history_rows(root)
    assert {(k, d) for s, k, d in rows if s == "campaign"} == {
        ("3", D(2024, 2, 29)),
        ("3", D(2024, 3, 31)),
        ("3", D(2024, 4, 30)),
    }
    assert ("active", "4", D(2024, 2, 29)) in rows  # live segments do see the late order
    # a segment excluding the frozen one excludes the frozen audience (3), not today's `active`
    assert {(k, d) for s, k, d in rows if s == "active_outside_campaign"} == {
        ("4", D(2024, 2, 29)),
        ("1", D(2024, 3, 31)),
        ("2", D(2024, 4, 30)),
    }


def test_freeze_before_the_date_is_live(tmp_path: Path) -> None:
    root = write_project(tmp_path, frozen=True)
    snapshot(root, [D(2024, 1, 30)])
    assert {(s, k) for s, k, _ in history_rows(root) if s == "campaign"} == {("campaign", "1")}


def test_invalid_freeze_date_is_a_spec_error(tmp_path: Path) -> None:
    root = write_project(tmp_path, frozen=True)
    frozen = root / "segments" / "frozen.yml"
    frozen.write_text(frozen.read_text().replace("2024-02-29", "2024-02-30"))
    code, _ = cli(root, "validate")
    assert code == 2


# ---------------------------------------------------------------------------------------------
# compiled scripts


def test_compiled_snapshot_script_runs_and_matches(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    code, _ = cli(root, "compile", "--as-of", "2024-03-31")
    assert code == 0
    script = (root / "target" / "compiled" / "local" / "snapshot.sql").read_text()
    with duckdb.connect(str(tmp_path / "script.duckdb")) as con:
        con.execute(f"SET file_search_path = '{root}'")
        for table in ("customers", "orders"):
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_csv_auto('{root}/data/{table}.csv')"
            )
        con.execute(script)
        con.execute(script)  # re-running replaces
        rows = con.execute("SELECT segment, entity_key, as_of FROM segments.segment_members")
        assert set(rows.fetchall()) == expected_rows([D(2024, 3, 31)])


def test_bigquery_snapshot_is_delete_insert_in_one_transaction(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / "segsql.yml").write_text(
        (root / "segsql.yml")
        .read_text()
        .replace(
            "default_target: local",
            "  bq: {engine: bigquery, project: acme, dataset: seg}\ndefault_target: local",
        )
    )
    code, _ = cli(root, "compile", "--target", "bq")
    assert code == 0
    script = (root / "target" / "compiled" / "bq" / "snapshot.sql").read_text()
    begin, delete = (
        script.index("BEGIN TRANSACTION;"),
        script.index("DELETE FROM acme.seg.segment_history"),
    )
    insert, commit = (
        script.index("INSERT INTO acme.seg.segment_history"),
        script.index("COMMIT TRANSACTION;"),
    )
    assert begin < delete < insert < commit
    assert "CAST(customer_id AS STRING)" in script
    # the splice's scratch tables are temporary tables of the transaction, dropped before COMMIT
    scratch = script.index("CREATE TEMPORARY TABLE segsql_flips")
    dropped = script.index("DROP TABLE IF EXISTS segsql_new")
    assert begin < scratch < delete and insert < dropped < commit
    assert "USING" not in script  # BigQuery's DELETE has no USING: rows are named by EXISTS


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the same history as DuckDB


@pytest.mark.parametrize("key_type", ["bigint", "varchar"])
def test_postgres_history_equals_duckdb(tmp_path: Path, pg_database: str, key_type: str) -> None:
    """The same backfill (with a frozen segment and a re-run) on both engines, row for row."""
    days = snapshot_dates(D(2024, 1, 31), D(2024, 12, 31), Every.month)
    root = write_project(tmp_path, key_type=key_type, frozen=True)
    snapshot(root, days)
    project = load_project(root)
    runner = PostgresRunner(resolve_target(project.config, "postgres"), pg_database)
    try:
        load_seeds_postgres(runner, project)
        compile_at = compiler_for(project, {}, runner)
        backfill(runner, compile_at, days, None)
        backfill(runner, compile_at, days[:3], None)  # re-run: replaced, not duplicated
        rows = runner.query(
            exp.select("segment", "entity_key", "as_of").from_(
                runner.target.relation("segment_members")
            )
        )
        intervals = runner.query(
            exp.select("segment", "entity_key", "valid_from", "valid_to").from_(
                runner.target.relation("segment_history")
            )
        )
        pg_growth = growth(runner, [*SEGMENTS, "campaign"], None, None)
        pg_flows = flows(runner, ["active", "lapsed", "prospect"], days[2], days[3])
    finally:
        runner.close()
    assert len(rows) == len(set(rows))
    assert set(rows) == history_rows(root)
    assert sorted(intervals, key=str) == sorted(stored_intervals(root), key=str)
    duck, _ = open_project(root)
    try:
        assert pg_growth == growth(duck, [*SEGMENTS, "campaign"], None, None)
        assert pg_flows == flows(duck, ["active", "lapsed", "prospect"], days[2], days[3])
    finally:
        duck.close()


def test_snapshot_cli_prints_sizes_and_refuses_bad_dates(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    code, text = cli(
        root, "snapshot", "--from", "2024-01-31", "--to", "2024-02-29", "--every", "month"
    )
    assert code == 0
    cells = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    }
    # rows: segments in project order; columns: the dates
    assert "┃ segment  ┃ 2024-01-31 ┃ 2024-02-29 ┃" in text
    assert cells == {
        "active": ["0", "1"],
        "lapsed": ["2", "2"],
        "prospect": ["1", "1"],
        "repeat": ["0", "1"],
    }
    assert cli(root, "snapshot", "--from", "2024-01-31")[0] == 2
    assert (
        cli(
            root, "snapshot", "--as-of", "2024-01-31", "--from", "2024-01-01", "--to", "2024-01-31"
        )[0]
        == 2
    )
    assert cli(root, "snapshot", "--as-of", "2024-13-01")[0] == 2


# ---------------------------------------------------------------------------------------------
# random data: history equals the plain-Python model on every date


DAY_OFFSETS = st.integers(min_value=0, max_value=200)  # days after 2023-12-01


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order_days=st.lists(st.tuples(st.integers(1, 4), DAY_OFFSETS), max_size=12),
    snapshot_days=st.lists(DAY_OFFSETS, min_size=1, max_size=5, unique=True),
)
def test_random_histories_match_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    order_days: list[tuple[int, int]],
    snapshot_days: list[int],
) -> None:
    start = D(2023, 12, 1)
    orders = [
        (number, customer, start + dt.timedelta(days=offset), str(number))
        for number, (customer, offset) in enumerate(order_days, start=1)
    ]
    days = sorted(start + dt.timedelta(days=offset) for offset in snapshot_days)
    root = write_project(tmp_path_factory.mktemp("random"), orders=orders)
    snapshot(root, days)
    expected = {
        (segment, str(c), day)
        for day in days
        for segment, customers in expected_members(day, orders).items()
        for c in customers
    }
    assert history_rows(root) == expected
    runner, _ = open_project(root)
    try:
        sizes = {(g.segment, g.as_of): g.size for g in growth(runner, list(SEGMENTS), None, None)}
    finally:
        runner.close()
    assert sizes == {
        (s, day): len(expected_members(day, orders)[s]) for s in SEGMENTS for day in days
    }


# ---------------------------------------------------------------------------------------------
# KPI trend: KPIs of the recorded members, date by date

KPIS_YML = """
kpis:
  - name: orders
    expr: sum(lifetime_orders)
  - name: recent_share
    expr: "{{ safe_divide('sum(recent_orders)', 'sum(lifetime_orders)') }}"
    format: percent
"""


def open_postgres_history(root: Path, dsn: str) -> tuple[PostgresRunner, Compile]:
    """The project's postgres target on a fresh database, its seeds loaded."""
    project = load_project(root)
    runner = PostgresRunner(resolve_target(project.config, "postgres"), dsn)
    load_seeds_postgres(runner, project)
    return runner, compiler_for(project, {}, runner)


def open_history(root: Path) -> tuple[DuckDBRunner, Compile]:
    """open_project, typed for the history functions."""
    project = load_project(root)
    runner = DuckDBRunner(resolve_target(project.config, None), root)
    load_seeds(runner, project, only_missing=False)
    return runner, compiler_for(project, {}, runner)


def write_kpi_project(root: Path, key_type: str = "bigint") -> Path:
    write_project(root, key_type=key_type, frozen=True)
    (root / "segments" / "kpis.yml").write_text(KPIS_YML)
    return root


def test_kpi_trend_by_hand(tmp_path: Path) -> None:
    """KPIs of each date's recorded members, with the features as of that date."""
    root = write_kpi_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    runner, compile_at = open_history(root)
    try:
        trend = kpi_trend(runner, compile_at, ["active", "lapsed", "campaign"], MONTH_ENDS)
    finally:
        runner.close()
    assert trend.kpis == ("orders", "recent_share")
    assert trend.formats == {"orders": "number", "recent_share": "percent"}

    def kpis(segment: str, day: dt.date) -> tuple[object, object]:
        values = trend.of(segment, day)
        return values["orders"], values["recent_share"]

    # 01-31: lapsed = {1, 2}, one order each to date, none in (01-01, 01-31]
    assert kpis("lapsed", D(2024, 1, 31)) == (2, 0)
    assert kpis("active", D(2024, 1, 31)) == (None, None)  # no member that day
    # 03-31: active = {1}: orders of 01-01 and 03-15, the second in the window
    assert kpis("active", D(2024, 3, 31)) == (2, Decimal("0.5"))
    # 03-31: lapsed = {2, 3}: 2 has one order by then (the 04-10 one comes later), 3 has two
    assert kpis("lapsed", D(2024, 3, 31)) == (3, 0)
    # 04-30: active = {2}: orders of 2023-12-20 and 04-10
    assert kpis("active", D(2024, 4, 30)) == (2, Decimal("0.5"))
    # the frozen campaign keeps customer 3 (active on 02-29), so its KPIs are 3's on 03-31,
    # although 3 no longer matches the campaign's `where` then: the trend reads history
    assert kpis("campaign", D(2024, 3, 31)) == (2, 0)


def test_growth_cli_kpis(tmp_path: Path) -> None:
    root = write_kpi_project(tmp_path)
    code, _ = cli(
        root, "snapshot", "--from", "2024-01-31", "--to", "2024-04-30", "--every", "month"
    )
    assert code == 0
    code, text = cli(root, "growth", "active", "--kpis", "recent_share,orders", "-f", "csv")
    assert code == 0
    assert text.splitlines() == [
        "segment,previous_as_of,as_of,size,previous_size,entered,exited,retained,net_growth,"
        "growth_rate,recent_share,orders",
        "active,,2024-01-31,0,,,,,,,,",
        "active,2024-01-31,2024-02-29,1,0,1,0,0,1,,1,2",  # customer 3: both orders in February
        "active,2024-02-29,2024-03-31,1,1,1,1,0,0,0.0,0.5,2",
        "active,2024-03-31,2024-04-30,1,1,1,1,0,0,0.0,0.5,2",
    ]
    code, text = cli(
        root, "growth", "lapsed", "--kpis", "all", "-f", "json", "--from", "2024-04-01"
    )
    assert code == 0
    assert [(r["as_of"], r["orders"], r["recent_share"]) for r in json.loads(text)] == [
        ("2024-04-30", 4, 0)  # lapsed = {1, 3}: two orders each
    ]
    code, text = cli(root, "growth", "active", "--kpis", "recent_share")
    assert code == 0 and "KPI trend" in text and "50.0%" in text
    assert cli(root, "growth", "--kpis", "nope")[0] == 2
    assert cli(root, "growth", "--kpis", "size")[0] == 2


def test_kpi_trend_is_one_query_per_date(tmp_path: Path) -> None:
    root = write_kpi_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    runner, compile_at = open_history(root)
    queries: list[exp.Expr] = []
    original = runner.query

    def counting(statement: exp.Expr) -> list[tuple[object, ...]]:
        queries.append(statement)
        return original(statement)

    runner.query = counting  # type: ignore[method-assign]
    try:
        kpi_trend(runner, compile_at, list(SEGMENTS), MONTH_ENDS)
    finally:
        runner.close()
    assert len(queries) == len(MONTH_ENDS)


@pytest.mark.parametrize("key_type", ["bigint", "varchar"])
def test_postgres_kpi_trend_equals_duckdb(tmp_path: Path, pg_database: str, key_type: str) -> None:
    days = snapshot_dates(D(2024, 1, 31), D(2024, 6, 30), Every.month)
    root = write_kpi_project(tmp_path, key_type)
    names = [*SEGMENTS, "campaign", "campaign_repeat"]
    snapshot(root, days)
    duck, duck_compile = open_history(root)
    try:
        expected = kpi_trend(duck, duck_compile, names, days)
    finally:
        duck.close()
    project = load_project(root)
    runner = PostgresRunner(resolve_target(project.config, "postgres"), pg_database)
    try:
        load_seeds_postgres(runner, project)
        compile_at = compiler_for(project, {}, runner)
        backfill(runner, compile_at, days, None)
        actual = kpi_trend(runner, compile_at, names, days)
    finally:
        runner.close()
    assert actual == expected
    assert expected.values[("active", D(2024, 3, 31))] == {
        "orders": 2,
        "recent_share": Decimal("0.5"),
    }


# ---------------------------------------------------------------------------------------------
# backfill: running aggregates shared across dates equal per-date evaluation

RUNNING_YML = """
tables:
  - name: customers
    columns: {customer_id: bigint, signup_at: date}
  - name: orders
    columns: {order_id: bigint, customer_id: bigint, ordered_at: date, code: varchar}
entities:
  - name: customer
    table: customers
    key: customer_id
    time: signup_at
    features:
      - name: recent_orders            # count, day window: shared
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(*)
        window: 30 days
        default: 0
      - name: value_2m                 # decimal sum with a row filter, month window: shared
        from: {table: orders, key: customer_id, time: ordered_at, where: "code <> '3'"}
        expr: sum(cast(code as decimal(10, 2))) + count(code)
        window: 2 months
      - name: orders_today             # window shorter than the step between dates: shared
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(code)
        window: 1 day
        default: 0
      - name: last_order_at            # lifetime max: shared (nothing leaves)
        from: {table: orders, key: customer_id, time: ordered_at, where: "code is not null"}
        expr: max(ordered_at)
      - name: days_quiet               # as_of around a shared part: shared, valued per date
        from: {table: orders, key: customer_id, time: ordered_at, where: "code is not null"}
        expr: "{{ days_since('max(ordered_at)') }}"
      - name: distinct_codes           # count(distinct): aggregated per date
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(distinct code)
        default: 0
      - name: float_total              # floating-point sum, same group: aggregated per date
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: sum(cast(code as double))
      - name: recent_twice             # derived, read from the shared columns
        expr: recent_orders * 2
      - name: signups_30d              # a bundle of windows only: keys leave its state
        from: {table: customers, key: customer_id, time: signup_at}
        expr: count(*)
        window: 30 days
        default: 0
segments:
  - {name: recent, entity: customer, where: recent_orders > 0}
  - {name: valuable, entity: customer, where: value_2m >= 5}
  - {name: today, entity: customer, where: orders_today > 0}
  - {name: seen_in_march, entity: customer, where: "last_order_at >= date '2024-03-01'"}
  - {name: varied, entity: customer, where: distinct_codes >= 2}
  - {name: big_float, entity: customer, where: float_total > 4.5}
  - {name: busy, entity: customer, where: recent_twice >= 4}
  - {name: no_value, entity: customer, where: value_2m is null}
  - {name: quiet, entity: customer, where: days_quiet >= 20}
  - {name: just_joined, entity: customer, where: signups_30d > 0}
  - {name: settled, entity: customer, where: signups_30d = 0}
"""

RUNNING_ORDERS = [
    *ORDERS,
    (7, 4, D(2024, 2, 9), "7"),
    (8, 4, D(2024, 2, 9), "3"),
    (9, 1, D(2024, 3, 20), "9"),
    (10, 3, D(2024, 4, 26), "2"),
]


def write_running_project(root: Path) -> Path:
    write_project(root, orders=RUNNING_ORDERS)
    (root / "segments" / "lifecycle.yml").write_text(RUNNING_YML)
    return root


def test_running_aggregates_equal_per_date_backfill(tmp_path: Path) -> None:
    days = [
        *snapshot_dates(D(2024, 1, 5), D(2024, 5, 3), Every.week),
        D(2024, 4, 26),  # twice in the same week: a step shorter than a week
        D(2024, 4, 27),
    ]
    shared, per_date = write_running_project(tmp_path / "a"), write_running_project(tmp_path / "b")
    runner, compile_at = open_history(shared)
    try:
        backfill(runner, compile_at, days, None)
    finally:
        runner.close()
    runner, compile_at = open_history(per_date)
    try:
        backfill(runner, compile_at, days, None, share_work=False)
    finally:
        runner.close()
    rows = history_rows(shared)
    assert rows == history_rows(per_date)
    assert {s for s, _, _ in rows} == {
        "recent",
        "valuable",
        "today",
        "seen_in_march",
        "varied",
        "big_float",
        "busy",
        "no_value",
        "quiet",
        "just_joined",
        "settled",
    }


def test_running_aggregates_on_postgres_equal_the_per_date_backfill(
    tmp_path: Path, pg_database: str
) -> None:
    """The same backfill on PostgreSQL, whose running states are typed by the server (numeric,
    int8...) and whose staged rows are read through a BRIN index: the memberships of DuckDB's
    per-date backfill, date by date."""
    days = snapshot_dates(D(2024, 1, 5), D(2024, 5, 3), Every.week)
    per_date = write_running_project(tmp_path / "duckdb")
    runner, compile_at = open_history(per_date)
    try:
        backfill(runner, compile_at, days, None, share_work=False)
    finally:
        runner.close()
    pg, pg_compile = open_postgres_history(write_running_project(tmp_path / "pg"), pg_database)
    try:
        backfill(pg, pg_compile, days, None)
        rows = pg.query(
            exp.select("segment", "entity_key", "as_of").from_(
                pg.target.relation("segment_members")
            )
        )
    finally:
        pg.close()
    assert {(s, str(k), d) for s, k, d in rows} == history_rows(per_date)


def test_carried_membership_with_more_segments_than_a_mask_word(tmp_path: Path) -> None:
    """70 segments of one entity: their masks take two BIGINT words. Carried from date to date
    (share_work), with dates re-run and a date already logged in the middle of the range (on
    other data), the history equals the one recorded by comparing each date's members with the
    stored intervals."""
    many = "".join(
        f"  - {{name: many_{i}, entity: customer, where: recent_orders + customer_id >= {i % 9}}}\n"
        for i in range(70)
    )
    days = snapshot_dates(D(2024, 1, 5), D(2024, 4, 26), Every.week)
    roots = []
    for name, share_work in (("carried", True), ("compared", False)):
        root = write_running_project(tmp_path / name)
        (root / "segments" / "many.yml").write_text(f"segments:\n{many}")
        # days[5] is logged first, on data with one more order: the range's backfill must
        # compare that date with what is stored, not with the date before
        late = (99, 1, days[5] - dt.timedelta(days=1), "1")
        write_seeds(root, "bigint", [*RUNNING_ORDERS, late])
        snapshot(root, [days[5]])
        write_seeds(root, "bigint", RUNNING_ORDERS)
        runner, compile_at = open_history(root)
        try:
            backfill(runner, compile_at, days, None, share_work=share_work)
            backfill(runner, compile_at, days[3:8], None, share_work=share_work)  # re-run
        finally:
            runner.close()
        roots.append(root)
    rows = history_rows(roots[0])
    assert rows == history_rows(roots[1])
    assert {s for s, _, _ in rows} >= {"many_0", "many_63", "many_69"}


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_running_aggregates_share_only_exact_aggregates(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    root = write_running_project(tmp_path)
    runner: Runner
    if engine == "postgres":
        runner, compile_at = open_postgres_history(root, request.getfixturevalue("pg_database"))
    else:
        runner, compile_at = open_history(root)
    days = [D(2024, 3, 1), D(2024, 3, 8)]
    indexes = 0
    try:
        runner.execute_all(history_ddl(runner.target))
        running = RunningAggregates(runner, days)
        for day in days:
            compiled = compile_at(day)
            plan = plan_snapshot(compiled, list(compiled.segments), set(), runner.target)
            statements = running.advance(
                compiled, snapshot_statements(compiled, runner.target, plan)
            )
            runner.execute_all(statements)
            indexes += sum(1 for s in statements if s.args.get("kind") == "INDEX")
        shared = running.shared()
        running.close()
    finally:
        runner.close()
    # PostgreSQL has no zone maps: each staged bundle (orders, customers) gets a BRIN index
    assert indexes == (2 if engine == "postgres" else 0)
    features = {
        alias: set(columns) for (entity, alias), columns in shared.items() if entity == "customer"
    }
    assert sorted(map(frozenset, features.values()), key=sorted) == sorted(
        [
            frozenset({"recent_orders"}),
            frozenset({"value_2m"}),
            frozenset({"orders_today"}),
            frozenset({"last_order_at", "days_quiet"}),
            frozenset({"signups_30d"}),
        ],
        key=sorted,
    )
