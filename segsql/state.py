"""Change impact against a git revision: `segsql diff --base REF` and the `state:modified` selector.

The project as it was at REF is read with `git archive` into a temporary folder and built with the
same as_of and vars as the current one. A segment is *modified* when it is new or its own
definition hash changed, *affected* when its own YAML is the same but its SQL is not (a feature or
macro it reads changed), and *downstream* when an ancestor is modified or affected. The base is
named by `--state REF` (or `--base REF` for diff) or the `SEGSQL_STATE` environment variable.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from segsql.build import ColumnLookup, CompiledProject
from segsql.emit import Target, resolve_target, segment_query, to_sql
from segsql.errors import ExecutionError, SegsqlError, SpecError
from segsql.load import PROJECT_FILE
from segsql.pipeline import compile_project
from segsql.run import Runner

STATE_ENV = "SEGSQL_STATE"
STATES = ("modified",)


@dataclass(frozen=True)
class SegmentChange:
    name: str
    change: str  # added, removed, modified, affected, downstream
    detail: str


# ---------------------------------------------------------------------------------------------
# the base project, from git


def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise ExecutionError(
            "git is not installed", hint="install git to compare revisions"
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise SpecError(
            f"git {args[0]} failed: {message[-1] if message else 'unknown error'}",
            hint="name a revision of this repository, e.g. --base main or --base HEAD~1",
        )
    return done.stdout


@contextmanager
def project_at(root: Path, ref: str) -> Iterator[Path]:
    """The project folder as it was at git revision `ref`, extracted into a temporary folder."""
    top = Path(_git(root, "rev-parse", "--show-toplevel").decode().strip())
    prefix = root.resolve().relative_to(top.resolve()).as_posix()
    try:
        _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except SpecError:  # --quiet: git says nothing, so say what was wrong
        raise SpecError(
            f"'{ref}' is not a commit of the git repository at {top}",
            hint="name a branch, tag or commit, e.g. --base main, --base HEAD~1 (in CI, fetch it: "
            "actions/checkout with fetch-depth: 0)",
        ) from None
    spec = [] if prefix == "." else ["--", prefix]
    archive = _git(top, "archive", "--format=tar", ref, *spec)
    with tempfile.TemporaryDirectory(prefix="segsql-base-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        base = Path(tmp) / prefix
        if not (base / PROJECT_FILE).is_file():
            raise SpecError(f"there is no {prefix}/{PROJECT_FILE} at revision {ref}")
        yield base


def compile_base(
    root: Path,
    ref: str,
    as_of: str | None,
    overrides: dict[str, Any] | None,
    introspect: ColumnLookup | None,
) -> CompiledProject:
    with project_at(root, ref) as base:
        try:
            return compile_project(base, as_of, overrides, introspect)
        except SegsqlError as exc:
            raise SpecError(
                f"the project at revision {ref} does not build:\n{exc.render(base)}",
                hint="compare against a revision where `segsql validate` passed",
            ) from None


# ---------------------------------------------------------------------------------------------
# comparing two builds


def compare(base: CompiledProject, current: CompiledProject) -> list[SegmentChange]:
    """Changes per segment, in the current dependency order (removed segments last)."""
    target = resolve_target(current.project.config, None)
    changes: list[SegmentChange] = []
    touched: set[str] = set()
    for name, segment in current.segments.items():
        old = base.segments.get(name)
        upstream = sorted(current.graph.ancestors(name) & touched)
        if old is None:
            change = SegmentChange(name, "added", "new segment")
        elif old.definition.definition_hash != segment.definition.definition_hash:
            change = SegmentChange(
                name,
                "modified",
                f"definition {old.definition.definition_hash} -> {segment.definition.definition_hash}",
            )
        elif upstream:
            change = SegmentChange(name, "downstream", "of " + ", ".join(upstream))
        elif _sql(base, name, target) != _sql(current, name, target):
            change = SegmentChange(name, "affected", "a feature or macro it reads changed")
        else:
            continue
        changes.append(change)
        touched.add(name)
    for name in base.segments:
        if name not in current.segments:
            changes.append(SegmentChange(name, "removed", "no longer defined"))
    return changes


def _sql(compiled: CompiledProject, name: str, target: Target) -> str:
    segment = compiled.segments[name]
    query = segment_query(segment, compiled.entities[segment.entity], target, standalone=True)
    return to_sql(query, target)


def modified_segments(changes: list[SegmentChange]) -> set[str]:
    """What `state:modified` selects: new, modified and affected segments."""
    return {c.name for c in changes if c.change in ("added", "modified", "affected")}


# ---------------------------------------------------------------------------------------------
# sizes before and after, on a target


def size_changes(
    runner: Runner, base: CompiledProject, current: CompiledProject, names: list[str]
) -> dict[str, tuple[int | None, int | None]]:
    """Members under the base and the current definitions, evaluated inline in one query."""
    parts: list[exp.Select] = []
    for side, compiled in (("base", base), ("current", current)):
        for name in names:
            if name in compiled.segments:
                segment = compiled.segments[name]
                query = segment_query(
                    segment, compiled.entities[segment.entity], runner.target, standalone=True
                )
                parts.append(
                    exp.select(
                        exp.alias_(exp.Literal.string(f"{side}:{name}"), "side"),
                        exp.alias_(exp.func("COUNT", exp.Star()), "n"),
                    ).from_(query.subquery("q"))
                )
    if not parts:
        return {}
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False, copy=False)
    counts = {str(side): int(str(n)) for side, n in runner.query(union)}
    return {name: (counts.get(f"base:{name}"), counts.get(f"current:{name}")) for name in names}


# ---------------------------------------------------------------------------------------------
# the selector


_cache: dict[tuple[str, str, str], set[str]] = {}


def state_selection(compiled: CompiledProject, value: str) -> set[str]:
    """`state:modified`: segments changed against the revision in $SEGSQL_STATE."""
    if value not in STATES:
        raise SpecError(f"unknown state '{value}'", hint="use state:modified or state:modified+")
    ref = os.environ.get(STATE_ENV)
    if not ref:
        raise SpecError(
            "state:modified needs the revision to compare with",
            hint=f"pass --state REF (segsql test) or set {STATE_ENV}=REF, e.g. {STATE_ENV}=origin/main",
        )
    root = compiled.project.config.root
    key = (str(root.resolve()), ref, compiled.as_of.isoformat())
    if key not in _cache:
        base = compile_base(root, ref, compiled.as_of.isoformat(), compiled.variables, None)
        _cache[key] = modified_segments(compare(base, compiled))
    return _cache[key]
