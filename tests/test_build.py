"""Build: column resolution, checks on expressions, features, segments, tie-breaking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlglot import exp

from segsql.build import CompiledProject, build_project
from segsql.errors import SpecError, SpecErrors
from segsql.load import load_project

AS_OF = dt.date(2024, 6, 30)
TABLES = """tables:
  - name: customers
    columns: {customer_id: bigint, country: varchar, signup_at: timestamp}
  - name: orders
    columns: {order_id: bigint, customer_id: bigint, ordered_at: timestamp, amount: double}
"""
FEATURES = """entities:
  - name: customer
    table: customers
    key: customer_id
    features:
      - name: revenue
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: sum(amount)
        default: 0
"""


def build(tmp_path: Path, definitions: str) -> CompiledProject:
    (tmp_path / "segsql.yml").write_text('name: shop\nvars: {as_of: "2024-06-30"}\n')
    (tmp_path / "segments").mkdir(exist_ok=True)
    (tmp_path / "segments" / "defs.yml").write_text(TABLES + definitions)
    project = load_project(tmp_path)
    return build_project(project, AS_OF, dict(project.config.vars))


def build_error(tmp_path: Path, definitions: str) -> SpecError:
    with pytest.raises(SpecErrors) as caught:
        build(tmp_path, definitions)
    assert len(caught.value.errors) == 1, caught.value.render()
    error = caught.value.errors[0]
    assert isinstance(error, SpecError) and error.location is not None
    return error


def segment(where: str, name: str = "x") -> str:
    return f'segments:\n  - name: {name}\n    entity: customer\n    where: "{where}"\n'


def test_qualified_column_is_refused(tmp_path: Path) -> None:
    error = build_error(tmp_path, FEATURES + segment("customers.country = 'DE'"))
    assert error.message == "qualified column 'customers.country' is not allowed here"
    assert error.hint is not None and "bare column name 'country'" in error.hint
    assert error.location is not None and error.location.line == 18


def test_qualified_column_in_a_feature_is_refused(tmp_path: Path) -> None:
    feature = "      - name: big\n        from: {table: orders, key: customer_id}\n        expr: max(o.amount)\n"
    error = build_error(tmp_path, FEATURES + feature)
    assert "qualified column 'o.amount'" in error.message


def test_feature_name_clashing_with_a_column(tmp_path: Path) -> None:
    feature = "      - name: Country\n        from: {table: orders, key: customer_id}\n        expr: count(*)\n"
    error = build_error(tmp_path, FEATURES + feature)
    assert error.message == (
        "feature 'Country' of entity 'customer' clashes with a column or another feature"
    )
    assert error.location is not None and error.location.line == 15  # the feature's own line


def test_two_features_with_one_name(tmp_path: Path) -> None:
    feature = "      - name: revenue\n        from: {table: orders, key: customer_id}\n        expr: count(*)\n"
    assert "clashes" in build_error(tmp_path, FEATURES + feature).message


def test_columns_resolve_case_insensitively_to_their_declared_spelling(tmp_path: Path) -> None:
    compiled = build(tmp_path, FEATURES + segment("COUNTRY = 'DE' and Revenue > 0"))
    names = [c.name for c in compiled.segments["x"].predicate.find_all(exp.Column)]
    assert names == ["country", "revenue"]
    assert compiled.segments["x"].columns == ("country", "revenue")


def test_unknown_column_names_the_closest(tmp_path: Path) -> None:
    error = build_error(tmp_path, FEATURES + segment("revenu > 0"))
    assert error.message == "unknown column 'revenu' in entity 'customer' (columns and features)"
    assert error.hint == "did you mean 'revenue'?"


def test_feature_checks(tmp_path: Path) -> None:
    no_aggregate = (
        "      - name: amt\n        from: {table: orders, key: customer_id}\n        expr: amount\n"
    )
    assert "does not aggregate" in build_error(tmp_path, FEATURES + no_aggregate).message
    derived_aggregate = "      - name: total\n        expr: sum(revenue)\n"
    assert "has no `from:`" in build_error(tmp_path, FEATURES + derived_aggregate).message
    bad_key = (
        "      - name: n\n        from: {table: orders, key: customerid}\n        expr: count(*)\n"
    )
    error = build_error(tmp_path, FEATURES + bad_key)
    assert "from.key 'customerid' is not a column of table 'orders'" in error.message
    assert error.hint == "did you mean 'customer_id'?"
    window_in_source = "      - name: r\n        from: {table: orders, key: customer_id}\n        expr: rank() over (order by sum(amount))\n"
    assert (
        "window functions are not allowed"
        in build_error(tmp_path, FEATURES + window_in_source).message
    )


def test_derived_features_in_a_cycle(tmp_path: Path) -> None:
    cycle = "      - name: a\n        expr: b + 1\n      - name: b\n        expr: a + 1\n"
    error = build_error(tmp_path, FEATURES + cycle)
    assert "depend on each other in a cycle: a -> b -> a" in error.message


def test_window_function_ties_break_on_the_key_once(tmp_path: Path) -> None:
    ranks = (
        "      - name: r1\n        expr: rank() over (order by revenue desc)\n"
        "      - name: r2\n        expr: rank() over (order by revenue, customer_id desc)\n"
    )
    compiled = build(tmp_path, FEATURES + ranks)
    features = {f.name: f.expression.sql() for f in compiled.entities["customer"].features}
    assert features["r1"] == "RANK() OVER (ORDER BY revenue DESC, customer_id NULLS LAST)"
    assert (
        features["r2"] == "RANK() OVER (ORDER BY revenue NULLS LAST, customer_id DESC)"
    )  # no second key


def test_segment_checks(tmp_path: Path) -> None:
    assert (
        "window functions are not allowed"
        in build_error(tmp_path, FEATURES + segment("rank() over (order by revenue) = 1")).message
    )
    unknown_entity = "segments:\n  - name: x\n    entity: custmer\n"
    error = build_error(tmp_path, FEATURES + unknown_entity)
    assert error.message == "segment 'x': unknown entity 'custmer'"
    assert error.hint == "did you mean 'customer'?"


def test_set_operands_must_share_the_entity(tmp_path: Path) -> None:
    other = (
        "  - name: order\n    table: orders\n    key: order_id\n"
        "segments:\n  - {name: a, entity: customer}\n  - {name: b, entity: order}\n"
        "  - {name: c, union: [a, b]}\n"
    )
    error = build_error(tmp_path, FEATURES + other)
    assert "segment 'c' mixes entities" in error.message


def test_where_terms_are_null_safe_and_inherited(tmp_path: Path) -> None:
    definitions = (
        FEATURES
        + segment("revenue > 0", "p")
        + (
            "  - name: c\n    parent: p\n    where: [\"country = 'DE'\", revenue < 100]\n"
            "  - name: n\n    parent: p\n    exclude: [c]\n"
        )
    )
    compiled = build(tmp_path, definitions)
    assert compiled.segments["c"].predicate.sql() == (
        "(revenue > 0) IS TRUE AND (country = 'DE') IS TRUE AND (revenue < 100) IS TRUE"
    )
    assert compiled.segments["n"].predicate.sql() == (
        "(revenue > 0) IS TRUE AND NOT ((revenue > 0) IS TRUE AND (country = 'DE') IS TRUE"
        " AND (revenue < 100) IS TRUE)"
    )
    assert [compiled.segments[s].depth for s in ("p", "c", "n")] == [1, 2, 3]
    assert list(compiled.segments) == ["p", "c", "n"]  # parents before children


@pytest.mark.parametrize("where", ["revenue + 1", "'yes'", "(revenue * 2)", "-revenue", "1"])
def test_where_must_be_a_condition(tmp_path: Path, where: str) -> None:
    error = build_error(tmp_path, FEATURES + segment(where))
    assert "must be a condition (true or false)" in error.message


@pytest.mark.parametrize("where", ["revenue > 0", "true", "not (revenue > 0)", "country"])
def test_conditions_and_bare_columns_are_accepted(tmp_path: Path, where: str) -> None:
    # a bare column may be a boolean column or feature; its type is the warehouse's to check
    assert "x" in build(tmp_path, FEATURES + segment(where)).segments


def test_a_build_reuses_the_entities_and_renderer_of_the_last_one_only_while_unchanged(
    tmp_path: Path,
) -> None:
    """`segsql compile --watch` builds again after every edit: an entity built from the same
    definition, tables, macros, variables and as_of is the last build's; any change rebuilds."""
    from conftest import MINI_PROJECT, copy_project

    from segsql.pipeline import compile_project

    root = copy_project(MINI_PROJECT, tmp_path / "mini")
    first = compile_project(root)
    again = compile_project(root)
    assert all(again.entities[n] is e for n, e in first.entities.items())
    other_day = compile_project(root, as_of="2024-05-31")
    assert all(other_day.entities[n] is not e for n, e in first.entities.items())
    before = compile_project(root)
    macros = next((root / "macros").glob("*.sql"))
    macros.write_text(macros.read_text(encoding="utf-8") + "\n{# edited #}\n", encoding="utf-8")
    edited = compile_project(root)
    assert all(edited.entities[n] is not e for n, e in before.entities.items())
    assert edited.entities["customer"].query.sql() == first.entities["customer"].query.sql()
    assert all(compile_project(root).entities[n] is e for n, e in edited.entities.items())
