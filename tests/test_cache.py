"""The compile cache (segsql/cache.py): a recompile reuses what did not change, and its output is
byte for byte what a compile without any cache gives.

Every test edits a project that was compiled once (so its cache is warm), recompiles it, and
compares the whole output folder with a cold compile of the same edited project in a fresh copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Invoke, copy_project, read_tree

from segsql import load
from segsql.cache import CACHE_FOLDER, _read_entries


def compile_all(segsql_cli: Invoke, project: Path, *args: str) -> dict[str, bytes]:
    result = segsql_cli(project, "compile", "--all-targets", *args)
    assert result.exit_code == 0, result.output
    return read_tree(project / "target", with_cache=False)


def cold_compile(segsql_cli: Invoke, project: Path, tmp_path: Path, *args: str) -> dict[str, bytes]:
    """The same project compiled in a fresh copy: no cache, no previous output."""
    fresh = copy_project(project, tmp_path / "cold")
    assert not (fresh / "target").exists()
    return compile_all(segsql_cli, fresh, *args)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def assert_same_output(warm: dict[str, bytes], cold: dict[str, bytes]) -> None:
    assert sorted(warm) == sorted(cold)
    for rel, data in cold.items():
        assert warm[rel] == data, f"{rel}: the recompile differs from a compile without cache"


def test_unchanged_recompile_is_identical_and_uses_the_cache(
    mini_project: Path, segsql_cli: Invoke
) -> None:
    first = compile_all(segsql_cli, mini_project)
    cache = mini_project / "target" / CACHE_FOLDER
    assert {p.name for p in cache.iterdir()} >= {
        "segments.pickle",
        "local.pickle",
        "definitions.pickle",
        ".gitignore",
    }
    assert (cache / ".gitignore").read_text() == "*\n"  # never committed with target/
    assert compile_all(segsql_cli, mini_project) == first


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        # a segment with descendants (and an exclude operand of a sibling) changes
        ("segments/core.yml", "where: orders_90d > 0", "where: orders_90d > 1"),
        # a description moves no SQL but is in the header; the line numbers below shift too
        ("segments/core.yml", "Ordered in the last 90 days.", "Ordered lately.\n    # moved"),
        # a macro every user of it must pick up
        ("macros/project.sql", "IN ('US', 'CA')", "IN ('US', 'CA', 'MX')"),
        # a variable in segsql.yml
        ("segsql.yml", "vip_threshold: 300", "vip_threshold: 250"),
    ],
)
def test_recompile_after_an_edit_equals_a_cold_compile(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path, file: str, old: str, new: str
) -> None:
    before = compile_all(segsql_cli, mini_project)
    edit(mini_project / file, old, new)
    warm = compile_all(segsql_cli, mini_project)
    assert warm != before, "the edit should change the output"
    assert_same_output(warm, cold_compile(segsql_cli, mini_project, tmp_path))


def test_another_as_of_is_not_served_from_the_cache(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    compile_all(segsql_cli, mini_project)
    warm = compile_all(segsql_cli, mini_project, "--as-of", "2024-01-15")
    assert b"2024-01-15" in warm["compiled/local/deploy.sql"]
    cold = cold_compile(segsql_cli, mini_project, tmp_path, "--as-of", "2024-01-15")
    assert_same_output(warm, cold)


def test_an_error_in_an_edited_segment_is_reported_not_hidden(
    mini_project: Path, segsql_cli: Invoke
) -> None:
    compile_all(segsql_cli, mini_project)
    cache = mini_project / "target" / CACHE_FOLDER
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    edit(mini_project / "segments/core.yml", "where: orders_90d > 0", "where: orders_9d > 0")
    result = segsql_cli(mini_project, "compile", "--all-targets")
    assert result.exit_code == 2
    assert "orders_9d" in result.output and "core.yml:" in result.output
    # the failed compile changed nothing, the cache included
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before


def test_a_corrupt_cache_is_ignored(mini_project: Path, segsql_cli: Invoke) -> None:
    first = compile_all(segsql_cli, mini_project)
    cache_files = list((mini_project / "target" / CACHE_FOLDER).glob("*.pickle"))
    assert len(cache_files) >= 3
    for path in cache_files:
        path.write_bytes(path.read_bytes()[:100])  # truncated
    (mini_project / "target" / CACHE_FOLDER / "segments.pickle").write_bytes(b"\x80\x05junk")
    assert compile_all(segsql_cli, mini_project) == first


def test_a_partial_compile_keeps_the_other_segments_cached(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    compile_all(segsql_cli, mini_project)
    cache_file = mini_project / "target" / CACHE_FOLDER / "local.pickle"
    entries_before = set(_read_entries(cache_file))
    edit(mini_project / "segments/core.yml", "where: plan = 'free'", "where: plan = 'basic'")
    result = segsql_cli(mini_project, "compile", "--all-targets", "--select", "free_plan")
    assert result.exit_code == 0, result.output
    entries_after = set(_read_entries(cache_file))
    assert entries_before - entries_after == set(), "unselected segments lost their entries"
    assert len(entries_after) > len(entries_before)  # the edited segment's new entry
    warm = compile_all(segsql_cli, mini_project)
    assert_same_output(warm, cold_compile(segsql_cli, mini_project, tmp_path))


def test_the_example_project_recompiles_identically(
    example_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    compile_all(segsql_cli, example_project)
    segment_file = next((example_project / "segments").glob("behavioral.yml"))
    text = segment_file.read_text(encoding="utf-8")
    first_where = re.search(r"where: (orders_90d > 0)", text)
    assert first_where is not None
    edit(segment_file, first_where.group(0), "where: orders_90d > 2")
    warm = compile_all(segsql_cli, example_project)
    assert_same_output(warm, cold_compile(segsql_cli, example_project, tmp_path))


def test_only_edited_definition_files_are_parsed_again(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compile_all(segsql_cli, mini_project)
    parsed: list[str] = []
    real_load_yaml = load.load_yaml

    def recording_load_yaml(path: Path) -> object:
        parsed.append(path.name)
        return real_load_yaml(path)

    monkeypatch.setattr(load, "load_yaml", recording_load_yaml)
    edit(mini_project / "segments/core.yml", "where: orders_90d > 0", "where: orders_90d > 1")
    warm = compile_all(segsql_cli, mini_project)
    # segsql.yml is always read; the other definition files come from the definitions cache
    assert parsed == ["segsql.yml", "core.yml"]
    monkeypatch.undo()
    assert_same_output(warm, cold_compile(segsql_cli, mini_project, tmp_path))


def test_names_are_checked_across_cached_and_edited_files(
    mini_project: Path, segsql_cli: Invoke
) -> None:
    compile_all(segsql_cli, mini_project)
    extra = mini_project / "segments" / "extra.yml"
    extra.write_text("segments:\n  - {name: active, entity: customer, where: plan = 'pro'}\n")
    result = segsql_cli(mini_project, "compile", "--all-targets")
    assert result.exit_code == 2, result.output
    assert "duplicate name 'active'" in result.output and "extra.yml:2" in result.output


def test_a_recompile_rewrites_only_the_files_that_changed(
    mini_project: Path, segsql_cli: Invoke
) -> None:
    compile_all(segsql_cli, mini_project)
    folder = mini_project / "target" / "compiled" / "local"

    def files() -> dict[str, tuple[int, bytes]]:
        return {p.name: (p.stat().st_ino, p.read_bytes()) for p in (folder / "segments").iterdir()}

    before = files()
    edit(mini_project / "segments/core.yml", "where: plan = 'free'", "where: plan = 'basic'")
    compile_all(segsql_cli, mini_project)
    after = files()
    assert sorted(after) == sorted(before)
    changed = {name for name in before if before[name][1] != after[name][1]}
    rewritten = {name for name in before if before[name][0] != after[name][0]}
    # free_plan and the segments built on it; each replaced whole (a new inode), the rest untouched
    assert "free_plan.sql" in changed and len(changed) < len(before)
    assert rewritten == changed
    # the folders are readable like any output, not private like a temp folder
    assert folder.stat().st_mode & 0o755 == 0o755


def test_a_broken_then_repaired_file_compiles_as_without_cache(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    """The definitions cache keeps only error-free reads: a broken file is reported on every
    compile until repaired, and the repaired one compiles as a cold compile does."""
    compile_all(segsql_cli, mini_project)
    core = mini_project / "segments/core.yml"
    original = core.read_text(encoding="utf-8")
    edit(core, "where: orders_90d > 0", "wher: orders_90d > 0")
    for _ in range(2):
        result = segsql_cli(mini_project, "compile", "--all-targets")
        assert result.exit_code == 2 and "wher" in result.output, result.output
    core.write_text(original.replace("orders_90d > 0", "orders_90d > 2", 1), encoding="utf-8")
    warm = compile_all(segsql_cli, mini_project)
    assert_same_output(warm, cold_compile(segsql_cli, mini_project, tmp_path))


def test_a_recompile_after_freezing_a_segment_equals_a_cold_compile(
    example_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    """Freezing any segment changes how the snapshot script writes every segment's predicate, so
    the snapshot parts are cached apart by which segments are frozen (a recompile once served
    the parts printed before the freeze)."""
    compile_all(segsql_cli, example_project)
    value = example_project / "segments" / "value.yml"
    edit(
        value, "    where: revenue_quintile", "    freeze: 2024-01-31\n    where: revenue_quintile"
    )
    warm = compile_all(segsql_cli, example_project)
    assert_same_output(warm, cold_compile(segsql_cli, example_project, tmp_path))
