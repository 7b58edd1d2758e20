"""`segsql overlap`: shared members, Jaccard and containment, checked against plain Python sets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image
from sqlglot import exp
from test_kpis import SEGMENTS, cli, project, python_features

from segsql.emit import feature_query, resolve_target
from segsql.overlap import overlap_query, plan_overlap
from segsql.pipeline import compile_project

pytest_plugins = ["pg_server"]  # the `pg_database` fixture: a fresh database on a real server


def python_members() -> dict[str, set[int]]:
    features = python_features()
    return {name: {k for k, f in features.items() if test(f)} for name, test in SEGMENTS.items()}


def test_every_pair_matches_plain_python(tmp_path: Path) -> None:
    pairs = json.loads(cli(project(tmp_path), "overlap", "-f", "json"))["pairs"]
    members = python_members()
    assert len(pairs) == len(members) * (len(members) - 1)
    for pair in pairs:
        a, b = members[pair["a"]], members[pair["b"]]
        assert (pair["size_a"], pair["size_b"], pair["shared"]) == (len(a), len(b), len(a & b))
        union = len(a | b)
        assert pair["jaccard"] == (pytest.approx(len(a & b) / union) if union else None)
        assert pair["containment"] == (pytest.approx(len(a & b) / len(a)) if a else None)
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    # by hand: big_buyers {1, 3, 4, 9} lie inside buyers (8 members): contained, Jaccard 4/8
    assert by_pair[("big_buyers", "buyers")]["containment"] == 1.0
    assert by_pair[("buyers", "big_buyers")]["containment"] == 0.5
    assert by_pair[("europe", "elsewhere")]["shared"] == 0


def test_selection_matrix_and_csv(tmp_path: Path) -> None:
    root = project(tmp_path)
    table = cli(root, "overlap", "-s", "buyers,big_buyers", "--metric", "containment")
    lines = [line for line in table.splitlines() if "big_buyers" in line and "│" in line]
    assert "1.000" in lines[-1] and "-" in lines[-1]  # row big_buyers: contained in buyers
    rows = list(
        csv.DictReader(io.StringIO(cli(root, "overlap", "-s", "europe,elsewhere", "-f", "csv")))
    )
    assert [(r["a"], r["b"], r["shared"], r["jaccard"]) for r in rows] == [
        ("europe", "elsewhere", "0", "0.0"),
        ("elsewhere", "europe", "0", "0.0"),
    ]


def test_one_query_one_scan_of_each_source(tmp_path: Path) -> None:
    compiled = compile_project(project(tmp_path))
    target = resolve_target(compiled.project.config, "pg")
    [plan] = plan_overlap(compiled, list(compiled.segments))
    query = overlap_query(compiled, plan, target)

    def scans(tree: exp.Expr) -> list[str]:
        return sorted(
            t.name for t in tree.find_all(exp.Table) if t.name in ("customers", "orders", "events")
        )

    assert scans(query) == scans(feature_query(compiled.entities["customer"], target))
    sums = [s for s in query.expressions if isinstance(s.this, exp.Sum)]
    assert len(sums) == 6 + 6 * 5 // 2  # sizes, then each unordered pair once


def test_heat_map_plot(tmp_path: Path) -> None:
    root = project(tmp_path)
    svg = tmp_path / "overlap.svg"
    cli(root, "overlap", "--metric", "containment", "--plot", str(svg))
    tree = ElementTree.parse(svg)
    titles = [t.text or "" for t in tree.iter("{http://www.w3.org/2000/svg}title")]
    members = python_members()
    # the chart's title, then one per off-diagonal cell with a value (not a row of empty `nobody`)
    assert len(titles) == 1 + sum(1 for a in members for b in members if a != b and members[a])
    assert "big_buyers / buyers: 1.000" in titles and "buyers / big_buyers: 0.500" in titles
    png = tmp_path / "overlap.png"
    cli(root, "overlap", "--metric", "containment", "--plot", str(png))
    with Image.open(png) as image:  # the same cells, drawn at twice the SVG's size
        assert image.size == (
            2 * int(tree.getroot().get("width") or 0),
            2 * int(tree.getroot().get("height") or 0),
        )
    output = cli(root, "overlap", "--plot", str(tmp_path / "overlap.pdf"), code=2)
    assert "write a .svg or a .png file" in output
    assert not (tmp_path / "overlap.pdf").exists()


def test_overlap_identical_on_postgres(tmp_path: Path, pg_database: str) -> None:
    root = project(tmp_path)
    env = {"SEGSQL_PG_DSN": pg_database}
    cli(root, "seed", "--target", "pg", env=env)
    on_pg = json.loads(cli(root, "overlap", "--target", "pg", "-f", "json", env=env))["pairs"]
    assert on_pg == json.loads(cli(root, "overlap", "-f", "json"))["pairs"]
