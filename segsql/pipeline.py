"""The stages chained: load -> build (render, parse, resolve) -> emit / run.

Commands call these; each returns typed data for the next stage.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from segsql.build import ColumnLookup, CompiledProject, build_project
from segsql.emit import Target, resolve_target, target_files
from segsql.errors import SpecError
from segsql.load import load_project
from segsql.model import Project


def parse_as_of(value: Any, source: str = "--as-of") -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(
            f"invalid date '{value}' in {source}", hint="write dates as YYYY-MM-DD, e.g. 2024-06-30"
        ) from None


def parse_vars(pairs: list[str] | None) -> dict[str, Any]:
    """`--var name=value` pairs (values as text; YAML-typed values belong in segsql.yml)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"invalid --var '{pair}'", hint="write --var name=value")
        out[name.strip()] = value
    return out


def effective_vars(
    project: Project, overrides: dict[str, Any], as_of: str | None
) -> tuple[dt.date, dict[str, Any]]:
    """Project vars with command-line overrides; as_of from --as-of, then vars, then today is refused."""
    variables = {**project.config.vars, **overrides}
    if as_of is not None:
        variables["as_of"] = as_of
    if "as_of" not in variables:
        raise SpecError(
            "no as_of date: segsql never uses the wall clock, so runs are reproducible",
            project.config.loc,
            'set `vars: {as_of: "2024-06-30"}` in segsql.yml or pass --as-of YYYY-MM-DD',
        )
    day = parse_as_of(variables["as_of"], "as_of")
    variables["as_of"] = day.isoformat()
    return day, variables


def compile_project(
    root: Path,
    as_of: str | None = None,
    overrides: dict[str, Any] | None = None,
    introspect: ColumnLookup | None = None,
) -> CompiledProject:
    project = load_project(root)
    day, variables = effective_vars(project, overrides or {}, as_of)
    return build_project(project, day, variables, introspect)


def target_of(compiled: CompiledProject, name: str | None) -> Target:
    return resolve_target(compiled.project.config, name)


# Below this many segments a worker process costs more than it saves.
PARALLEL_MIN_SEGMENTS = 200
_forked: tuple[CompiledProject, list[Target], list[str]] | None = None


def emit_targets(
    compiled: CompiledProject, targets: list[Target], names: list[str]
) -> dict[str, dict[str, str]]:
    """Every target's files (relative path -> text); targets are generated on all cores at once.

    Workers are forked, so they share the compiled project without pickling its trees; only the
    finished text comes back. Output is identical to the sequential path (same function, same input).
    """
    cores = os.cpu_count() or 1
    fork = "fork" in multiprocessing.get_all_start_methods()
    if len(targets) < 2 or len(names) < PARALLEL_MIN_SEGMENTS or cores < 2 or not fork:
        return {t.name: target_files(compiled, t, names) for t in targets}
    global _forked
    _forked = (compiled, targets, names)
    try:
        context = multiprocessing.get_context("fork")
        workers = min(cores, len(targets))
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            files = list(pool.map(_target_files_in_worker, range(len(targets))))
    except Exception:
        # A worker failed (e.g. a user error found while emitting): redo the work here, so the
        # error is raised as itself, with its location, rather than through pickling.
        return {t.name: target_files(compiled, t, names) for t in targets}
    finally:
        _forked = None
    return {t.name: f for t, f in zip(targets, files, strict=True)}


def _target_files_in_worker(index: int) -> dict[str, str]:
    assert _forked is not None, "emit_targets sets the project before forking"
    compiled, targets, names = _forked
    return target_files(compiled, targets[index], names)
