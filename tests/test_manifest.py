"""target/manifest.json: valid against the published JSON Schema, deterministic, and true to the YAML."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from segsql.cli import app
from segsql.emit import MANIFEST_VERSION
from segsql.model import SEGMENT_KINDS

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "segsql" / "templates" / "init"
runner = CliRunner()


def manifest_schema() -> dict[str, Any]:
    text = (resources.files("segsql") / "schemas" / "manifest.schema.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def example_ready() -> bool:
    return (REPO / "segsql.yml").is_file() and any((REPO / "segments").rglob("*.yml"))


def copy_project(source: Path, dest: Path) -> Path:
    """A copy without build output or databases, so tests never touch the working tree."""
    ignore = shutil.ignore_patterns(
        ".*", "target", "*.duckdb*", "tests", "bench", "segsql", "*.egg-info"
    )
    shutil.copytree(source, dest, ignore=ignore)
    return dest


@pytest.fixture(params=["starter", "example"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "starter":
        return copy_project(TEMPLATE, tmp_path / "starter")
    if not example_ready():
        pytest.skip("the example project (segsql.yml, segments/) is not in the repository yet")
    return copy_project(REPO, tmp_path / "example")


def compile_manifest(project: Path, out: str = "target") -> bytes:
    result = runner.invoke(
        app, ["--project-dir", str(project), "compile", "--all-targets", "--out", out]
    )
    assert result.exit_code == 0, result.output
    return (project / out / "manifest.json").read_bytes()


def test_manifest_validates_against_the_published_schema(project: Path) -> None:
    document = json.loads(compile_manifest(project))
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    assert document["manifest_version"] == MANIFEST_VERSION


def test_manifest_bytes_are_identical_across_compiles(project: Path) -> None:
    first = compile_manifest(project, "target_a")
    second = compile_manifest(project, "target_b")
    assert first.replace(b"target_a", b"target_b") == second
    assert compile_manifest(project, "target_a") == first


def test_schema_version_and_kinds_match_the_code() -> None:
    schema = manifest_schema()
    assert schema["properties"]["manifest_version"] == {"const": MANIFEST_VERSION}
    kinds = schema["$defs"]["segment"]["properties"]["kind"]["enum"]
    assert set(kinds) == {None, *SEGMENT_KINDS}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("segments", "active", "line"), "23"),
        (("segments", "active", "source_columns"), ["amount"]),
        (("segments", "active", "kind"), "gold"),
        (("manifest_version",), 99),
    ],
)
def test_schema_refuses_malformed_manifests(
    tmp_path: Path, path: tuple[str, ...], value: Any
) -> None:
    document = json.loads(compile_manifest(copy_project(TEMPLATE, tmp_path / "p")))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, manifest_schema(), cls=jsonschema.Draft202012Validator)


def test_manifest_records_the_starter_project_as_written(tmp_path: Path) -> None:
    """Facts read off segsql/templates/init/segments/customers.yml by hand."""
    document = json.loads(compile_manifest(copy_project(TEMPLATE, tmp_path / "p")))
    segments = document["segments"]
    assert list(segments) == ["active", "active_big_spenders", "active_in_europe"]
    yml = (TEMPLATE / "segments" / "customers.yml").read_text().splitlines()
    for name, entry in segments.items():
        assert entry["file"] == "segments/customers.yml"
        assert yml[entry["line"] - 1].strip() == f"- name: {name}"
        assert entry["compiled"] == {
            t: f"target/compiled/{t}/segments/{name}.sql" for t in ("local", "pg", "bq")
        }
        for target_file in entry["compiled"].values():
            assert (tmp_path / "p" / target_file).is_file()
    assert segments["active"]["children"] == ["active_big_spenders", "active_in_europe"]
    assert segments["active_in_europe"]["parent"] == "active"
    assert segments["active_in_europe"]["macros"] == ["is_europe"]
    assert segments["active_big_spenders"]["source_columns"] == [
        "orders.amount",
        "orders.customer_id",
        "orders.ordered_at",
    ]
    assert document["targets"] == {"local": "duckdb", "pg": "postgres", "bq": "bigquery"}
