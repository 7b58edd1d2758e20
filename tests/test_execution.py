"""Compiled SQL executed on DuckDB returns exactly the members computed by hand.

The fixture is tests/fixtures/mini (as_of 2024-06-30, so a 90-day window is (2024-04-01, 2024-06-30]
and a 30-day one (2024-05-31, 2024-06-30]). Customers, by key:

    id country plan  birth_date  signup_at         orders (id: day amount status)           page views
    1  DE      pro   1990-05-10  2023-01-15        1: 06-30 23:59:59 120; 2: 01-10 300;     06-23
                                                   19: 07-15 10 (after as_of)
    2  US      free  2000-02-29  2023-03-01        3: 04-01 12:00 50; 4: 2023-12-01 20      06-24, 06-30
    3  FR      pro   1985-06-30  2022-11-20        5: 04-02 00:00 80; 7: 03-15 40 returned  07-01
    4  US      NULL  NULL        2024-06-15        8: 06-20 15                              06-30
    5  NULL    free  1970-12-31  2021-07-07        9: 2023-06-15 500; 10: 2023-09-01 700;   (email_open, NULL)
                                                   6: 07-01 00:00 999 (after as_of)
    6  CA      pro   1995-07-01  2023-08-08        11: 05-31 23:00 NULL amount; 12: 05-01 200;
                                                   18: 06-25 30 NULL status; 20: 02-01 100
    7  GB      free  1988-01-01  2024-06-30 21:00  13: 06-30 22:00 15                       06-10
    8  US      pro   1960-03-01  2020-01-01        14: 03-01 1500; 15: 06-15 1000;
                                                   16: 06-16 10 cancelled
    9  DE      free  2004-02-29  2024-07-05        17: 07-10 60 (signs up after as_of: not a customer yet)
    10 ES      NULL  1999-09-09  2023-05-05        none                                     06-25

(all dates 2024 unless written). Features derived from that, per customer at 2024-06-30:

    id orders_90d orders_lifetime lifetime_revenue completed_revenue days_since_last stage
    1  1          2               420              420               0               active
    2  0          2               70               70                90              at_risk
    3  1          2               120              80                89              active
    4  1          1               15               15                10              new
    5  0          2               1200             1200              303             churned
    6  3          4               330              300               5               active
    7  1          1               15               15                0               new
    8  2          3               2510             2500              14              active
    10 0 (default) 0 (default)    0 (default)      0 (default)       NULL            prospect
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MINI_PROJECT, copy_project
from psycopg import sql
from sqlglot import exp
from typer.testing import CliRunner

from segsql.cli import app
from segsql.dialects import ENGINES
from segsql.emit import Target
from segsql.model import TargetConfig
from segsql.pipeline import compile_project
from segsql.run import DuckDBRunner, deploy, load_seeds

pytest_plugins = ["pg_server"]  # a real PostgreSQL server for the cross-engine test at the end

IN_MEMORY = Target(TargetConfig(name="memory", engine="duckdb"), ENGINES["duckdb"])
EVERYONE = {1, 2, 3, 4, 5, 6, 7, 8, 10}  # customer 9 signs up on 2024-07-05, after as_of


class Evaluation:
    """One compile + deploy of the fixture on in-memory DuckDB, at one as_of with some vars."""

    def __init__(
        self, root: Path, as_of: str | None = None, overrides: dict[str, Any] | None = None
    ):
        compiled = compile_project(root, as_of, overrides)
        self.runner = DuckDBRunner(IN_MEMORY, root)
        load_seeds(self.runner, compiled.project, only_missing=False)
        deploy(self.runner, compiled, list(compiled.segments))
        self.compiled = compiled

    def members(self, segment: str) -> set[int]:
        key = self.compiled.entities[self.compiled.segments[segment].entity].key
        rows = self.runner.query(exp.select(key).from_(IN_MEMORY.relation(segment)))
        keys = [row[0] for row in rows]
        assert len(keys) == len(set(keys)), f"{segment} returned duplicate keys: {keys}"
        return set(keys)

    def feature(self, name: str) -> dict[int, Any]:
        """customer_id -> value of one column of the customer feature relation."""
        relation = IN_MEMORY.relation("customer_features")
        rows = self.runner.query(exp.select("customer_id", name).from_(relation))
        return dict(rows)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(MINI_PROJECT, tmp_path_factory.mktemp("execution") / "mini")


@pytest.fixture(scope="module")
def at_default(root: Path) -> Evaluation:
    """as_of 2024-06-30 (vars.as_of), vip_threshold 300 (vars)."""
    return Evaluation(root)


# ---------------------------------------------------------------------------------------------
# windows and point-in-time


def test_entity_time_hides_customers_who_signed_up_after_as_of(at_default: Evaluation) -> None:
    # 9 signs up on 2024-07-05; 7 signs up at 21:00 on as_of itself and already counts.
    assert at_default.members("all_customers") == EVERYONE


def test_window_boundaries(at_default: Evaluation) -> None:
    # orders_90d > 0 with the window (2024-04-01, 2024-06-30]:
    # 1: only in-window order at 06-30 23:59:59 (late on the as_of day) -> IN
    # 2: only recent order on 04-01 12:00 = as_of - 90 days -> OUT
    # 3: only recent order on 04-02 00:00 = as_of - 89 days -> IN
    # 5: order on 07-01 00:00, after as_of -> OUT; 4, 6, 7, 8 order in May/June; 10 never
    assert at_default.members("active") == {1, 3, 4, 6, 7, 8}


def test_window_boundary_of_in_window_macro(at_default: Evaluation) -> None:
    # orders_30d = count(*) filter (in_window(ordered_at, '30 days')), window (05-31, 06-30]:
    # 8 has 06-15 and 06-16 -> 2; 6 has 06-25 and 05-31 23:00 (the excluded bound) -> 1
    assert at_default.members("busy_month") == {8}
    assert at_default.feature("orders_30d") == {
        1: 1,
        2: 0,
        3: 0,
        4: 1,
        5: 0,
        6: 1,
        7: 1,
        8: 2,
        10: 0,
    }


def test_date_typed_time_column_and_source_where(at_default: Evaluation) -> None:
    # views_7d: page_view events (a DATE column) in (06-23, 06-30]: 1's is on 06-23 (OUT), 2 has
    # 06-24 and 06-30, 3's is after as_of, 5's are not page views (one NULL type), 4 and 10 one each.
    assert at_default.feature("views_7d") == {1: 0, 2: 2, 3: 0, 4: 1, 5: 0, 6: 0, 7: 0, 8: 0, 10: 1}


# ---------------------------------------------------------------------------------------------
# defaults and NULLs


def test_defaults_for_entities_without_rows(at_default: Evaluation) -> None:
    # 10 has no order: orders_lifetime defaults to 0 (a NULL would not match `= 0`); 2 has orders
    # but none in the window: orders_90d is 0 too.
    assert at_default.members("never_ordered") == {10}
    assert at_default.feature("orders_90d")[2] == 0
    assert at_default.feature("last_order_at")[10] is None  # no default: stays NULL


def test_lifetime_and_filtered_revenue(at_default: Evaluation) -> None:
    # lifetime: rows up to as_of, sum ignores 6's NULL amount: 6 = 200 + 30 + 100 = 330.
    # completed_revenue (from.where status = 'completed') drops 6's NULL-status 30 -> 300, so
    # completed_revenue >= 310 is 1 (420), 5 (1200; the 999 of 07-01 is after as_of) and 8 (2500).
    assert at_default.feature("lifetime_revenue") == {
        1: 420, 2: 70, 3: 120, 4: 15, 5: 1200, 6: 330, 7: 15, 8: 2510, 10: 0,
    }  # fmt: skip
    assert at_default.members("completed_big") == {1, 5, 8}


def test_null_column_in_where_is_not_a_member(at_default: Evaluation) -> None:
    # plan <> 'free': 4 and 10 have a NULL plan, so the comparison is NULL -> not members.
    assert at_default.members("paid_plan") == {1, 3, 6, 8}


def test_exclude_keeps_entities_whose_excluded_predicate_is_null(at_default: Evaluation) -> None:
    # not_free_plan = all_customers minus free_plan {2, 5, 7}: 4 and 10 (NULL plan) are not in
    # free_plan, so they stay (a naive NOT (plan = 'free') would drop them).
    assert at_default.members("free_plan") == {2, 5, 7}
    assert at_default.members("not_free_plan") == {1, 3, 4, 6, 8, 10}
    # recent_buyers: days_since_last_order <= 30 -> {1 (0), 4 (10), 6 (5), 7 (0), 8 (14)};
    # lapsed = the rest, including 10 whose days_since_last_order is NULL.
    assert at_default.members("recent_buyers") == {1, 4, 6, 7, 8}
    assert at_default.members("lapsed") == {2, 3, 5, 10}


# ---------------------------------------------------------------------------------------------
# nesting and set algebra


def test_reserved_word_as_a_segment_name(at_default: Evaluation) -> None:
    # `order`: orders_90d >= 2 -> 6 (3), 8 (2)
    assert at_default.members("order") == {6, 8}


def test_nesting_three_deep(at_default: Evaluation) -> None:
    # active {1, 3, 4, 6, 7, 8} -> lifetime_revenue >= var vip_threshold (300): 1 (420), 6 (330),
    # 8 (2510) -> north America (6 CA, 8 US) and days_since_last_order < 10 (6: 5; 8: 14) -> {6}
    assert at_default.members("active_high_value") == {1, 6, 8}
    assert at_default.members("active_high_value_na") == {6}
    assert at_default.compiled.segments["active_high_value_na"].depth == 4


def test_union_intersect_exclude(at_default: Evaluation) -> None:
    # union: active_high_value {1, 6, 8} + lapsed {2, 3, 5, 10}
    assert at_default.members("vip_or_lapsed") == {1, 2, 3, 5, 6, 8, 10}
    # intersect: active {1, 3, 4, 6, 7, 8} and not_free_plan {1, 3, 4, 6, 8, 10}
    assert at_default.members("active_not_on_free") == {1, 3, 4, 6, 8}
    # exclude: active minus active_high_value {1, 6, 8}
    assert at_default.members("active_not_vip") == {3, 4, 7}
    # parent + where: lapsed {2, 3, 5, 10} with a page view in 7 days {2, 4, 10}
    assert at_default.members("browsing_not_buying") == {2, 10}


# ---------------------------------------------------------------------------------------------
# derived features and window functions


def test_window_function_ties_break_on_the_key(at_default: Evaluation) -> None:
    # row_number() over (order by orders_90d desc), ties by customer_id:
    # 6 (3) -> 1, 8 (2) -> 2, then orders_90d = 1: 1, 3, 4, 7 -> 3..6, then 2, 5, 10 -> 7..9
    assert at_default.feature("recency_rank") == {
        6: 1,
        8: 2,
        1: 3,
        3: 4,
        4: 5,
        7: 6,
        2: 7,
        5: 8,
        10: 9,
    }
    assert at_default.members("top_5_recent") == {1, 3, 4, 6, 8}
    # ntile(5) over (order by lifetime_revenue) on 9 rows: buckets of 2, 2, 2, 2, 1 over
    # 10 (0), 4 (15), 7 (15), 2 (70), ...: the 4/7 tie straddles a bucket edge; the key decides.
    assert at_default.members("bottom_quintile") == {4, 10}


def test_safe_divide(at_default: Evaluation) -> None:
    # lifetime_revenue / orders_lifetime: 1 = 210, 5 = 600, 8 = 836.67 pass 200; 6 = 82.5;
    # 10 = 0 / 0 -> NULL (no error, not a member)
    assert at_default.members("high_aov") == {1, 5, 8}
    assert at_default.feature("avg_order_value")[10] is None
    assert float(at_default.feature("avg_order_value")[6]) == 82.5


def test_age_from_birth_date(at_default: Evaluation) -> None:
    # floor((20240630 - yyyymmdd) / 10000): 3 born 1985-06-30 turns 39 on as_of; 6 born
    # 1995-07-01 is still 28; 2 (2000-02-29) and 10 (1999-09-09) are 24; 4 has no birth date.
    assert at_default.feature("age") == {
        1: 34,
        2: 24,
        3: 39,
        4: None,
        5: 53,
        6: 28,
        7: 36,
        8: 64,
        10: 24,
    }
    assert at_default.members("seniors") == {3, 5, 8}
    assert at_default.members("under_25") == {2, 10}


def test_lifecycle_stage(at_default: Evaluation) -> None:
    # new: signed up after 05-31 (4, 7); prospect: no order (10); active: last order after 04-01
    # (1, 3, 6, 8); at_risk: after 01-02 (= as_of - 180 days; 2's last order is 04-01); else churned (5)
    assert at_default.feature("stage") == {
        1: "active", 2: "at_risk", 3: "active", 4: "new", 5: "churned",
        6: "active", 7: "new", 8: "active", 10: "prospect",
    }  # fmt: skip
    assert at_default.members("at_risk") == {2}
    assert at_default.members("newcomers") == {4, 7}
    assert at_default.members("prospects") == {10}


def test_rfm_score(at_default: Evaluation) -> None:
    # ntile(5) over 9 customers = buckets of 2, 2, 2, 2, 1, ties by key:
    # R (days since last order asc, NULL last; R = 6 - bucket): 1, 7 -> 5; 6, 4 -> 4; 8, 3 -> 3;
    #   2, 5 -> 2; 10 (NULL) -> 1
    # F (orders_lifetime 0,1,1,2,2,2,2,3,4 for 10,4,7,1,2,3,5,8,6): 10, 4 -> 1; 7, 1 -> 2;
    #   2, 3 -> 3; 5, 8 -> 4; 6 -> 5
    # M (lifetime_revenue): 10, 4 -> 1; 7, 2 -> 2; 3, 6 -> 3; 1, 5 -> 4; 8 -> 5
    assert at_default.feature("rfm") == {
        1: 524, 2: 232, 3: 333, 4: 411, 5: 244, 6: 453, 7: 522, 8: 345, 10: 111,
    }  # fmt: skip
    assert at_default.members("rfm_400_plus") == {1, 4, 6, 7}
    # champion = rfm >= 500 and stage = 'active': 1 (524, active); 7 (522) is new
    assert at_default.members("champions") == {1}


# ---------------------------------------------------------------------------------------------
# evaluation date and vars


def test_as_of_moves_every_window(root: Path) -> None:
    # at 2024-07-01 the window is (04-02, 07-01]: 3's order of 04-02 drops out, 5's order of
    # 07-01 00:00 comes in; 9 (signup 07-05) still does not exist.
    later = Evaluation(root, as_of="2024-07-01")
    assert later.members("active") == {1, 4, 5, 6, 7, 8}
    assert later.compiled.as_of == dt.date(2024, 7, 1)
    # at 2024-07-31 customer 9 exists, with an order on 07-10
    assert Evaluation(root, as_of="2024-07-31").members("all_customers") == EVERYONE | {9}


def test_leap_day_birthday(root: Path) -> None:
    # 2 is born 2000-02-29: in 2025 (no 29 Feb) they turn 25 on 1 March, not on 28 February.
    # 9 (2004-02-29, signed up 2024-07-05) is 20 on both days; 10 (1999-09-09) is 25.
    assert Evaluation(root, as_of="2025-02-28").members("under_25") == {2, 9}
    assert Evaluation(root, as_of="2025-03-01").members("under_25") == {9}


def test_var_override_changes_members(root: Path) -> None:
    # lifetime_revenue >= 1000 among active {1, 3, 4, 6, 7, 8}: only 8 (2510)
    assert Evaluation(root, overrides={"vip_threshold": "1000"}).members("active_high_value") == {8}


# ---------------------------------------------------------------------------------------------
# the same SQL on PostgreSQL


def test_postgres_returns_the_same_members(
    root: Path, at_default: Evaluation, pg_database: str
) -> None:
    """`segsql seed` + `segsql run --target pg` on a real server: every segment has exactly the
    members checked by hand above on DuckDB (windows, NULLs, ties, macros, quoting)."""
    for command in ("seed", "run"):
        result = CliRunner().invoke(
            app,
            ["--project-dir", str(root), command, "--target", "pg"],
            env={"SEGSQL_PG_DSN": pg_database},
        )
        assert result.exit_code == 0, result.output
    with psycopg.connect(pg_database) as connection:
        for name in at_default.compiled.segments:
            query = sql.SQL("SELECT customer_id FROM segments.{}").format(sql.Identifier(name))
            rows = connection.execute(query).fetchall()
            assert {row[0] for row in rows} == at_default.members(name), name
