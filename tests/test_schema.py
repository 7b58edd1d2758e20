"""The shipped JSON Schemas agree with the loader's key tables and accept real projects."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from segsql import load
from segsql.cli import app
from segsql.model import DATA_TESTS, ENGINES, KPI_FORMATS, SEGMENT_KINDS

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "segsql" / "templates" / "init"

# Each loader key table and where the schema describes that mapping.
WHERE = {
    "PROJECT_KEYS": ("project", None),
    "TARGET_KEYS": ("project", "target"),
    "FILE_KEYS": ("definitions", None),
    "TABLE_KEYS": ("definitions", "table"),
    "ENTITY_KEYS": ("definitions", "entity"),
    "FEATURE_KEYS": ("definitions", "feature"),
    "SOURCE_KEYS": ("definitions", "source"),
    "SEGMENT_KEYS": ("definitions", "segment"),
    "UNIT_TEST_KEYS": ("definitions", "unit_test"),
    "KPI_KEYS": ("definitions", "kpi"),
}


def schema(kind: str) -> dict[str, Any]:
    text = (resources.files("segsql") / "schemas" / f"{kind}.schema.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def properties(kind: str, definition: str | None) -> set[str]:
    node = schema(kind) if definition is None else schema(kind)["$defs"][definition]
    assert node.get("additionalProperties") is False, (
        "unknown keys must be refused, as the loader does"
    )
    return set(node["properties"])


def key_tables() -> dict[str, set[str]]:
    return {
        name: value
        for name, value in vars(load).items()
        if name.endswith("_KEYS") and isinstance(value, set)
    }


@pytest.mark.parametrize("table", sorted(WHERE))
def test_schema_keys_are_the_loader_keys(table: str) -> None:
    kind, definition = WHERE[table]
    assert properties(kind, definition) == key_tables()[table]


def test_every_key_table_is_described_somewhere() -> None:
    """A key table added to the loader later must appear in a schema (found by its keys)."""
    objects: list[set[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                objects.append(set(node["properties"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for kind in ("project", "definitions"):
        walk(schema(kind))
    missing = {name: keys for name, keys in key_tables().items() if keys not in objects}
    assert not missing, f"describe these loader key tables in segsql/schemas: {missing}"


def test_enumerations_match_the_model() -> None:
    defs = schema("definitions")["$defs"]
    assert tuple(defs["segment"]["properties"]["kind"]["enum"]) == SEGMENT_KINDS
    assert set(schema("project")["$defs"]["target"]["properties"]["engine"]["enum"]) == set(ENGINES)
    variants = defs["data_test"]["oneOf"]
    named = {v["const"] for v in variants if "const" in v}
    valued = {k for v in variants if "properties" in v for k in v["properties"]}
    assert named == {k for k, takes_value in DATA_TESTS.items() if not takes_value}
    assert valued == {k for k, takes_value in DATA_TESTS.items() if takes_value}
    assert tuple(defs["kpi"]["properties"]["format"]["enum"]) == KPI_FORMATS


def as_json(path: Path) -> Any:
    """YAML as an editor's YAML extension sees it: dates are strings."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value.isoformat() if isinstance(value, dt.date) else value

    return convert(yaml.safe_load(path.read_text()))


def project_files(root: Path) -> list[tuple[str, Path]]:
    files = [("project", root / "segsql.yml")] if (root / "segsql.yml").is_file() else []
    files += [("definitions", p) for p in sorted((root / "segments").glob("**/*.y*ml"))]
    return files


@pytest.mark.parametrize(
    ("kind", "path"),
    project_files(TEMPLATE) + project_files(REPO),
    ids=lambda v: v if isinstance(v, str) else str(Path(v).relative_to(REPO)),
)
def test_real_project_files_validate(kind: str, path: Path) -> None:
    jsonschema.Draft202012Validator(schema(kind)).validate(as_json(path))


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"segments": [{"name": "x", "wher": "a > 1"}]}, "'wher' was unexpected"),
        ({"segments": [{"name": "x", "tests": [{"min_size": "many"}]}]}, "is not valid"),
        ({"segments": [{"name": "1x"}]}, "does not match"),
        ({"unit_tests": [{"name": "t"}]}, "'expect' is a required property"),
    ],
)
def test_schema_refuses_what_the_loader_refuses(document: dict[str, Any], fragment: str) -> None:
    errors = list(jsonschema.Draft202012Validator(schema("definitions")).iter_errors(document))
    assert errors
    assert any(fragment in e.message for e in errors) or any(
        fragment in c.message for e in errors for c in (e.context or [])
    )


@pytest.mark.parametrize("kind", ["project", "definitions"])
def test_schema_command_prints_the_shipped_schema(kind: str) -> None:
    result = CliRunner().invoke(app, ["schema", "--kind", kind])
    assert result.exit_code == 0
    assert json.loads(result.output) == schema(kind)
    jsonschema.Draft202012Validator.check_schema(json.loads(result.output))
