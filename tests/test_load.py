"""Loading: YAML with positions, duplicate keys, unknown keys with suggestions, shape errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from segsql.errors import SpecError, SpecErrors
from segsql.load import load_project
from segsql.pipeline import effective_vars, parse_vars
from segsql.yamlio import YMap, YScalar, YSeq, load_yaml

PROJECT = 'name: shop\nvars: {as_of: "2024-06-30"}\n'
ENTITY = """entities:
  - name: customer
    table: customers
    key: customer_id
    columns: [customer_id, country]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(tmp_path: Path, definitions: str, config: str = PROJECT) -> Path:
    write(tmp_path / "segsql.yml", config)
    write(tmp_path / "segments" / "defs.yml", definitions)
    return tmp_path


def load_errors(root: Path) -> list[SpecError]:
    with pytest.raises(SpecErrors) as caught:
        load_project(root)
    return caught.value.errors  # type: ignore[return-value]


def rendered(errors: list[SpecError], root: Path) -> str:
    return "\n".join(error.render(root) for error in errors)


# ---------------------------------------------------------------------------------------------
# yamlio


def test_nodes_carry_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.yml", "segments:\n  - name: x\n    where: 'a > 1'\n    tags: [p, q]\n"
    )
    root = load_yaml(path)
    assert isinstance(root, YMap)
    items = root.items["segments"]
    assert isinstance(items, YSeq)
    segment = items.items[0]
    assert isinstance(segment, YMap)
    assert (segment.loc.line, segment.loc.col) == (2, 5)
    assert (segment.key_locs["where"].line, segment.key_locs["where"].col) == (3, 5)
    where = segment.items["where"]
    assert isinstance(where, YScalar) and where.value == "a > 1"
    assert (where.loc.line, where.loc.col) == (3, 12)  # the quote
    assert where.content_loc is not None and where.content_loc.col == 13  # the text after it


def test_block_scalar_text_starts_on_the_next_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "where: |\n  a > 1\n  and b < 2\n")
    root = load_yaml(path)
    assert isinstance(root, YMap)
    where = root.items["where"]
    assert isinstance(where, YScalar) and where.content_loc is not None
    assert (where.content_loc.line, where.content_loc.col) == (2, 3)


def test_duplicate_key_is_an_error_at_the_second_key(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "name: x\nwhere: a > 1\nwhere: a > 2\n")
    with pytest.raises(SpecError) as caught:
        load_yaml(path)
    assert caught.value.message == "duplicate key 'where'"
    assert caught.value.location is not None
    assert (caught.value.location.line, caught.value.location.col) == (3, 1)
    assert caught.value.hint is not None and "line 2" in caught.value.hint


def test_syntax_error_is_located(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "a: [1, 2\nb: 3\n")
    with pytest.raises(SpecError) as caught:
        load_yaml(path)
    assert caught.value.message.startswith("invalid YAML")
    assert caught.value.location is not None and caught.value.location.line >= 2


def test_empty_file_and_impossible_dates(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path / "empty.yml", "")) is None
    root = load_yaml(write(tmp_path / "d.yml", "a: 2024-02-30\nb: 2024-02-29\n"))
    assert isinstance(root, YMap)
    a, b = root.items["a"], root.items["b"]
    assert isinstance(a, YScalar) and a.value == "2024-02-30"  # kept as text, not a crash
    assert isinstance(b, YScalar) and b.value == dt.date(2024, 2, 29)


# ---------------------------------------------------------------------------------------------
# load


def test_unknown_keys_suggest_the_closest_known_key(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ENTITY
        + "    featurs: []\n"
        + "segments:\n  - name: active\n    entity: customer\n    wher: country = 'DE'\n"
        + "    parnt: x\n",
        config=PROJECT + "dialetc: duckdb\n",
    )
    text = rendered(load_errors(root), root)
    assert "segsql.yml:3:1: error: unknown key 'dialetc' in segsql.yml" in text
    assert "did you mean 'dialect'?" in text
    assert "segments/defs.yml:6:5: error: unknown key 'featurs' in entity" in text
    assert "did you mean 'features'?" in text
    assert "segments/defs.yml:10:5: error: unknown key 'wher' in segment" in text
    assert "did you mean 'where'" in text
    assert "segments/defs.yml:11:5: error: unknown key 'parnt' in segment" in text
    assert "did you mean 'parent'?" in text


def test_unknown_key_without_a_close_match_lists_the_allowed_ones(tmp_path: Path) -> None:
    root = project(tmp_path, "segments:\n  - name: x\n    entity: customer\n    zzz: 1\n")
    [error] = load_errors(root)
    assert error.hint is not None and error.hint.startswith("allowed keys: ")
    assert "where" in error.hint


def test_feature_and_source_keys_are_checked(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ENTITY
        + "    features:\n      - name: n\n        expr: count(*)\n"
        + "        from: {table: orders, key: customer_id, tme: ordered_at}\n"
        + "        window: 90 dayz\n",
    )
    text = rendered(load_errors(root), root)
    assert "unknown key 'tme' in feature 'from'" in text and "did you mean 'time'?" in text
    assert "segments/defs.yml:10:17: error: invalid window '90 dayz'" in text


def test_shape_errors(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        "segments:\n  - name: 1st\n    entity: customer\n"
        "  - name: y\n    entity: customer\n    kind: behavioural\n    tags: {a: 1}\n"
        "  - name: z\n",
    )
    text = rendered(load_errors(root), root)
    assert "segments/defs.yml:2:11: error: invalid name '1st'" in text
    assert "got 'behavioural'" in text and "did you mean 'behavioral'?" in text
    assert "'tags' in segment must hold text values, got a mapping" in text
    assert "segments/defs.yml:8:5: error: segment 'z' selects nothing" in text


def test_duplicate_names_across_files_and_kinds(tmp_path: Path) -> None:
    root = project(tmp_path, ENTITY + "segments:\n  - {name: x, entity: customer}\n")
    write(
        tmp_path / "segments" / "more" / "other.yml",
        "segments:\n  - {name: customer, entity: customer}\n  - {name: x, entity: customer}\n",
    )
    errors = load_errors(root)
    text = rendered(errors, root)
    # files load in sorted order: defs.yml first, so the copies in more/other.yml are reported
    assert "segments/more/other.yml:2:5: error: duplicate name 'customer'" in text
    assert "segments/more/other.yml:3:5: error: duplicate name 'x'" in text
    assert "segments/defs.yml:7:5" in text  # where x was defined first
    assert len(errors) == 2


def test_definitions_are_found_in_subfolders_and_sorted(tmp_path: Path) -> None:
    root = project(tmp_path, ENTITY + "segments:\n  - {name: b, entity: customer}\n")
    write(tmp_path / "segments" / "sub" / "a.yaml", "segments:\n  - {name: a, parent: b}\n")
    loaded = load_project(root)
    assert list(loaded.segments) == ["a", "b"]
    assert loaded.segments["a"].parent is not None and loaded.segments["a"].parent.name == "b"
    assert loaded.config.targets["local"].engine == "duckdb"  # a default target


def test_definition_hash_ignores_tests_but_not_where(tmp_path: Path) -> None:
    base = "segments:\n  - name: x\n    entity: customer\n    where: country = 'DE'\n"
    first = load_project(project(tmp_path / "1", base)).segments["x"].definition_hash
    tested = load_project(project(tmp_path / "2", base + "    tests: [not_empty]\n"))
    changed = load_project(project(tmp_path / "3", base.replace("DE", "FR")))
    assert tested.segments["x"].definition_hash == first
    assert changed.segments["x"].definition_hash != first


def test_as_of_and_vars(tmp_path: Path) -> None:
    loaded = load_project(project(tmp_path, ENTITY))
    day, variables = effective_vars(loaded, parse_vars(["threshold=10"]), "2024-02-29")
    assert day == dt.date(2024, 2, 29)
    assert variables == {"as_of": "2024-02-29", "threshold": "10"}
    with pytest.raises(SpecError, match="invalid date"):
        effective_vars(loaded, {}, "2023-02-29")
    with pytest.raises(SpecError, match="invalid --var"):
        parse_vars(["no_equals_sign"])


def test_as_of_is_required(tmp_path: Path) -> None:
    loaded = load_project(project(tmp_path, ENTITY, config="name: shop\n"))
    with pytest.raises(SpecError, match="no as_of date"):
        effective_vars(loaded, {}, None)
