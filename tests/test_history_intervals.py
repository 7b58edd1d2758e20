"""Validity-interval history: splicing a date into the intervals, checked against the plain-Python
model of tests/test_history.py.

Every read goes through `history_rows`, which also rebuilds the maximal intervals of the recorded
memberships in Python and compares them with the stored rows (`check_intervals`): a duplicated,
split, stale or overlapping interval fails any of these tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_history import (
    MONTH_ENDS,
    ORDERS,
    SEGMENTS,
    D,
    cli,
    expected_members,
    expected_rows,
    history_rows,
    open_history,
    snapshot,
    stored_intervals,
    write_project,
    write_seeds,
)

from segsql.errors import ExecutionError
from segsql.history import backfill, growth

Order = tuple[int, int, dt.date, str]


def model_rows(recorded: dict[dt.date, list[Order]]) -> set[tuple[str, str, dt.date]]:
    """The memberships history must hold: each date as evaluated on the data it was last
    recorded with."""
    return {
        (segment, str(c), day)
        for day, orders in recorded.items()
        for segment, customers in expected_members(day, orders).items()
        for c in customers
    }


def test_dates_out_of_order_equal_a_backfill(tmp_path: Path) -> None:
    days = [D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 31), D(2024, 4, 30), D(2024, 2, 15)]
    in_order = write_project(tmp_path / "a")
    snapshot(in_order, days)
    shuffled = write_project(tmp_path / "b")
    for day in [days[3], days[0], days[2], days[4], days[1]]:
        snapshot(shuffled, [day])
    assert history_rows(shuffled) == history_rows(in_order) == expected_rows(days)
    assert sorted(stored_intervals(shuffled), key=str) == sorted(
        stored_intervals(in_order), key=str
    )


def test_intervals_by_hand(tmp_path: Path) -> None:
    """Customer 1: active on 03-31 only; lapsed on 01-31 and 02-29, again from 04-30 (it left
    and came back); prospect 4 stays one open interval."""
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    intervals = {(s, k, a, b) for s, k, a, b in stored_intervals(root) if k in ("1", "4")}
    assert intervals == {
        ("lapsed", "1", D(2024, 1, 31), D(2024, 3, 31)),
        ("active", "1", D(2024, 3, 31), D(2024, 4, 30)),
        ("repeat", "1", D(2024, 3, 31), D(2024, 4, 30)),
        ("lapsed", "1", D(2024, 4, 30), None),
        ("prospect", "4", D(2024, 1, 31), None),
    }


def test_a_middle_date_merges_and_splits_intervals(tmp_path: Path) -> None:
    """Recording a date between two others joins their intervals when the key is a member on it,
    and re-running it with data that makes the key leave splits them again."""
    root = write_project(tmp_path)
    snapshot(root, [D(2024, 1, 31), D(2024, 4, 30)])
    # customer 2 is lapsed on 01-31 and active on 04-30: two intervals of different segments
    assert ("lapsed", "2", D(2024, 1, 31), D(2024, 4, 30)) in stored_intervals(root)
    snapshot(root, [D(2024, 2, 29)])  # lapsed on 02-29 too: the interval already holds it
    assert ("lapsed", "2", D(2024, 1, 31), D(2024, 4, 30)) in stored_intervals(root)
    # an order on 02-20 makes customer 2 active on 02-29: lapsed is split around it
    late = [*ORDERS, (7, 2, D(2024, 2, 20), "7")]
    write_seeds(root, "bigint", late)
    snapshot(root, [D(2024, 2, 29)])
    lapsed_2 = {(a, b) for s, k, a, b in stored_intervals(root) if (s, k) == ("lapsed", "2")}
    assert lapsed_2 == {(D(2024, 1, 31), D(2024, 2, 29))}  # closed on 02-29
    active_2 = {(a, b) for s, k, a, b in stored_intervals(root) if (s, k) == ("active", "2")}
    assert active_2 == {(D(2024, 2, 29), None)}  # 02-29 (late order) joins 04-30's interval
    recorded = {D(2024, 1, 31): ORDERS, D(2024, 2, 29): late, D(2024, 4, 30): ORDERS}
    assert history_rows(root) == model_rows(recorded)
    # back to the original data: re-running 02-29 merges customer 2's lapsed intervals again
    write_seeds(root, "bigint", ORDERS)
    snapshot(root, [D(2024, 2, 29)])
    assert ("lapsed", "2", D(2024, 1, 31), D(2024, 4, 30)) in stored_intervals(root)
    assert history_rows(root) == expected_rows([D(2024, 1, 31), D(2024, 2, 29), D(2024, 4, 30)])


COUNTED = {  # the history statements CountingConnection counts, and their counters
    "DELETE FROM segments.segment_history": "deleted",
    "INSERT INTO segments.segment_history": "inserted",
    "UPDATE segments.segment_history": "updated",
}


class CountingConnection:
    """A DuckDB connection that counts the rows each DELETE / INSERT / UPDATE of the history
    deletes, inserts or updates (DuckDB returns the count as the statement's result)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self._connection = connection
        self.deleted = 0
        self.inserted = 0
        self.updated = 0

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        result = self._connection.execute(sql, *args)
        for start, counter in COUNTED.items():
            if sql.startswith(start):
                (count,) = result.fetchone() or (0,)
                setattr(self, counter, getattr(self, counter) + count)
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)


def counted_snapshot(root: Path, days: list[dt.date]) -> CountingConnection:
    """snapshot(), counting the history rows written."""
    runner, compile_at = open_history(root)
    counting = CountingConnection(runner.connection)
    runner.connection = counting  # type: ignore[assignment]
    try:
        backfill(runner, compile_at, days, None)
    finally:
        runner.close()
    return counting


def test_rerunning_an_unchanged_date_writes_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS)
    before = stored_intervals(root)
    written = counted_snapshot(root, [D(2024, 2, 29), D(2024, 4, 30)])
    assert (written.deleted, written.inserted) == (0, 0)
    assert stored_intervals(root) == before


def test_an_in_order_append_writes_only_the_changes(tmp_path: Path) -> None:
    """Appending 04-30 after 03-31 closes the intervals of who left (customer 1 leaves active and
    repeat, 2 leaves lapsed: each open interval is replaced by a closed one) and opens those of
    who came; no other row is written."""
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS[:3])
    written = counted_snapshot(root, MONTH_ENDS[3:])
    march, april = expected_members(MONTH_ENDS[2]), expected_members(MONTH_ENDS[3])
    exits = sum(len(march[s] - april[s]) for s in SEGMENTS)
    entries = sum(len(april[s] - march[s]) for s in SEGMENTS)
    assert (exits, entries) == (3, 3)
    assert (written.deleted, written.inserted) == (exits, exits + entries)
    assert history_rows(root) == expected_rows(MONTH_ENDS)


def test_a_backfill_appending_dates_closes_and_opens_intervals_in_place(tmp_path: Path) -> None:
    """Dates after every logged one are appends: who leaves has their open interval closed (one
    UPDATE per exit), who comes gets an open one; nothing is deleted or rewritten."""
    root = write_project(tmp_path)
    snapshot(root, MONTH_ENDS[:2])
    written = counted_snapshot(root, MONTH_ENDS[2:])
    members = [expected_members(day) for day in MONTH_ENDS[1:]]
    steps = list(itertools.pairwise(members))
    exits = sum(len(a[s] - b[s]) for a, b in steps for s in SEGMENTS)
    entries = sum(len(b[s] - a[s]) for a, b in steps for s in SEGMENTS)
    assert exits > 0 and entries > 0
    assert (written.deleted, written.updated, written.inserted) == (0, exits, entries)
    assert history_rows(root) == expected_rows(MONTH_ENDS)


def test_growth_over_out_of_order_dates_matches_python(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    days = [D(2024, 1, 5) + dt.timedelta(weeks=w) for w in range(18)]
    for chunk in (days[9:], days[:5], days[5:9]):
        snapshot(root, chunk)
    runner, _ = open_history(root)
    try:
        rows = {(g.segment, g.as_of): g for g in growth(runner, list(SEGMENTS), None, None)}
    finally:
        runner.close()
    for segment in SEGMENTS:
        for previous, day in itertools.pairwise(days):
            before, now = expected_members(previous)[segment], expected_members(day)[segment]
            g = rows[(segment, day)]
            assert (g.size, g.previous_size, g.entered, g.exited, g.retained) == (
                len(now),
                len(before),
                len(now - before),
                len(before - now),
                len(now & before),
            )


def test_row_per_date_history_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    with duckdb.connect(str(root / "hist.duckdb")) as con:
        con.execute("CREATE SCHEMA segments")
        con.execute(
            "CREATE TABLE segments.segment_history (segment TEXT, entity_key TEXT, as_of DATE)"
        )
    with pytest.raises(ExecutionError, match="row-per-date layout"):
        snapshot(root, [D(2024, 1, 31)])
    assert cli(root, "snapshot", "--as-of", "2024-01-31")[0] == 1


# ---------------------------------------------------------------------------------------------
# random sequences of snapshots, in any order, re-runs on changed data: history equals the model

DAY_OFFSETS = st.integers(min_value=0, max_value=150)  # days after 2023-12-01


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    orders_a=st.lists(st.tuples(st.integers(1, 4), DAY_OFFSETS), max_size=10),
    orders_b=st.lists(st.tuples(st.integers(1, 4), DAY_OFFSETS), max_size=10),
    runs=st.lists(
        st.tuples(st.lists(DAY_OFFSETS, min_size=1, max_size=3, unique=True), st.booleans()),
        min_size=1,
        max_size=5,
    ),
)
def test_random_splices_match_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    orders_a: list[tuple[int, int]],
    orders_b: list[tuple[int, int]],
    runs: list[tuple[list[int], bool]],
) -> None:
    """Each run records some dates (in any order, some again) on one of two data sets: every
    date must hold its membership on the data it was last recorded with."""
    start = D(2023, 12, 1)

    def orders(offsets: list[tuple[int, int]]) -> list[Order]:
        return [
            (number, customer, start + dt.timedelta(days=offset), str(number))
            for number, (customer, offset) in enumerate(offsets, start=1)
        ]

    data = {False: orders(orders_a), True: orders(orders_b)}
    root = write_project(tmp_path_factory.mktemp("splice"), orders=data[False])
    recorded: dict[dt.date, list[Order]] = {}
    current = False
    for offsets, use_b in runs:
        if use_b != current:
            write_seeds(root, "bigint", data[use_b])
            current = use_b
        days = [start + dt.timedelta(days=o) for o in offsets]
        snapshot(root, days)
        recorded.update({day: data[use_b] for day in days})
    assert history_rows(root) == model_rows(recorded)
    runner, _ = open_history(root)
    try:
        sizes = {(g.segment, g.as_of): g.size for g in growth(runner, list(SEGMENTS), None, None)}
    finally:
        runner.close()
    assert sizes == {
        (s, day): len(expected_members(day, orders)[s])
        for day, orders in recorded.items()
        for s in SEGMENTS
    }
