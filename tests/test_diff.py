"""Drift (`compile --check`) and change impact against git (`segsql diff`, `state:modified`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import read_tree
from typer.testing import CliRunner

from segsql.cli import app
from segsql.scaffold import scaffold

runner = CliRunner()


def segsql(project: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["--project-dir", str(project), *args], env=env)
    return result.exit_code, result.output


def git(repo: Path, *args: str) -> None:
    identity = [
        "-c",
        "user.email=ci@example.com",
        "-c",
        "user.name=CI",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    scaffold(root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# ---------------------------------------------------------------------------------------------
# compile --check


def test_compile_check_passes_when_up_to_date(project: Path) -> None:
    assert segsql(project, "compile")[0] == 0
    code, output = segsql(project, "compile", "--check")
    assert code == 0
    assert "up to date" in output


def test_compile_check_lists_drift_and_writes_nothing(project: Path) -> None:
    assert segsql(project, "compile")[0] == 0
    before = read_tree(project / "target")
    edit(project / "segments" / "customers.yml", "kind: geographic", "kind: demographic")
    stale = project / "target" / "compiled" / "local" / "segments" / "dropped.sql"
    stale.write_text("select 1;\n")
    hand_edited = project / "target" / "compiled" / "local" / "features" / "customer.sql"
    hand_edited.write_text(hand_edited.read_text() + "-- tweaked by hand\n")
    before = read_tree(project / "target")

    code, output = segsql(project, "compile", "--check")

    assert code == 1
    assert read_tree(project / "target") == before  # nothing written
    listed = {
        (state.strip(), path)
        for state, path in (
            line.split(": ", 1) for line in output.splitlines() if ": target/" in line
        )
    }
    assert {
        ("changed", "target/compiled/local/segments/active_in_europe.sql"),  # kind is in its header
        ("changed", "target/compiled/local/features/customer.sql"),
        ("changed", "target/manifest.json"),
        ("stale", "target/compiled/local/segments/dropped.sql"),
    } <= listed
    unchanged = {"active.sql", "active_big_spenders.sql"}
    assert not {path for _, path in listed if path.rsplit("/", 1)[-1] in unchanged}
    assert f"{len(listed)} compiled file(s) differ" in output


def test_plain_compile_check_checks_the_committed_targets(project: Path) -> None:
    """Committed with --all-targets, a plain --check (the pre-commit hook) checks every target the
    manifest names, drift in a non-default target included."""
    assert segsql(project, "compile", "--all-targets")[0] == 0
    code, output = segsql(project, "compile", "--check")
    assert code == 0, output
    assert "up to date" in output
    stale = project / "target" / "compiled" / "pg" / "segments" / "active.sql"
    stale.write_text(stale.read_text() + "-- tweaked by hand\n")
    code, output = segsql(project, "compile", "--check")
    assert code == 1
    assert "changed: target/compiled/pg/segments/active.sql" in output


def test_compile_check_names_the_targets_it_was_not_run_for(project: Path) -> None:
    """Committed with --all-targets, checked with one --target: the manifest differs, and the
    report says which flags to pass; with the same flags the check passes."""
    assert segsql(project, "compile", "--all-targets")[0] == 0
    code, output = segsql(project, "compile", "--check", "--target", "local")
    assert code == 1
    assert "changed: target/manifest.json" in output
    assert "compiled for bq, local, pg, this check for local" in output
    assert segsql(project, "compile", "--check", "--all-targets")[0] == 0


def test_compile_check_reports_missing_output(project: Path) -> None:
    code, output = segsql(project, "compile", "--check", "--out", "build")
    assert code == 1
    assert "missing: build/manifest.json" in output
    assert not (project / "build").exists()


# ---------------------------------------------------------------------------------------------
# segsql diff against a real git repository


@pytest.fixture
def repo(project: Path) -> Path:
    """The starter project committed, then changed: one segment edited, one added, one removed."""
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "starter project")
    segments = project / "segments" / "customers.yml"
    # active: from orders in the last 90 days to orders in the last 30 days
    edit(segments, "        window: 90 days", "        window: 30 days")
    edit(segments, "    where: orders_90d > 0\n", "    where: orders_90d > 0\n    owner: growth\n")
    text = segments.read_text()
    start = text.index("  - name: active_in_europe")
    end = text.index("\n\n", start)
    segments.write_text(text[:start] + text[end + 1 :])
    edit(segments, "      active_in_europe: [1]\n", "")  # its unit test no longer expects it
    (project / "segments" / "more.yml").write_text(
        "segments:\n  - name: big_spenders_ever\n    entity: customer\n    where: lifetime_revenue >= 100\n"
    )
    return project


def test_diff_reports_added_removed_changed_and_downstream(repo: Path) -> None:
    code, output = segsql(repo, "diff", "--base", "main", "--format", "json")
    assert code == 0, output
    changes = {s["segment"]: (s["change"], s["detail"]) for s in json.loads(output)["segments"]}
    assert changes["active"][0] == "modified"
    assert changes["active_big_spenders"] == ("downstream", "of active")
    assert changes["big_spenders_ever"] == ("added", "new segment")
    assert changes["active_in_europe"] == ("removed", "no longer defined")
    assert set(changes) == {
        "active",
        "active_big_spenders",
        "big_spenders_ever",
        "active_in_europe",
    }


def test_diff_with_target_counts_members_before_and_after(repo: Path) -> None:
    code, output = segsql(repo, "diff", "--base", "main", "--target", "local", "--format", "json")
    assert code == 0, output
    sizes = {
        s["segment"]: (s.get("members_before"), s.get("members_after"))
        for s in json.loads(output)["segments"]
    }
    # seed orders up to 2024-06-30: customer 1 on 06-01 (+120), 2 on 05-15, 4 on 06-29;
    # 90 days: 1, 2, 4 are active; 30 days (after 05-31): 1 and 4. Lifetime >= 100: customer 1.
    assert sizes["active"] == (3, 2)
    assert sizes["active_big_spenders"] == (1, 1)
    assert sizes["active_in_europe"] == (2, None)
    assert sizes["big_spenders_ever"] == (None, 1)


def test_feature_change_marks_readers_affected_and_state_selector(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "starter")
    # is_europe() now also lists PT: the SQL changes, though no seed customer lives there
    edit(project / "macros" / "project.sql", "'NL'", "'NL', 'PT'")
    code, output = segsql(project, "diff", "--base", "main", "--format", "json")
    assert code == 0, output
    [change] = json.loads(output)["segments"]
    assert (change["segment"], change["change"]) == ("active_in_europe", "affected")

    env = {"SEGSQL_STATE": "main"}
    code, output = segsql(project, "list", "--select", "state:modified", "-f", "json", env=env)
    assert code == 0, output
    assert [row["name"] for row in json.loads(output)] == ["active_in_europe"]
    code, output = segsql(
        project, "test", "--select", "state:modified+", "--state", "main", "-f", "json"
    )
    assert code == 0, output
    assert {r["segment"] for r in json.loads(output)["results"] if r["kind"] != "unit"} == {
        "active_in_europe"
    }


def test_editing_only_tests_is_not_a_modification(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "starter")
    edit(
        project / "segments" / "customers.yml",
        "{max_share_of_parent: 0.8}",
        "{max_share_of_parent: 0.9}",
    )
    code, output = segsql(project, "diff", "--base", "main")
    assert code == 0
    assert "no segment changed since main" in output


def test_diff_needs_a_git_revision(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "starter")
    code, output = segsql(project, "diff", "--base", "no-such-branch")
    assert code == 2
    assert "'no-such-branch' is not a commit of the git repository" in output
    code, output = segsql(project, "list", "--select", "state:modified")
    assert code == 2
    assert "SEGSQL_STATE" in output
