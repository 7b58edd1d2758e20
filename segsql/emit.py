"""Stage 5, emit: resolved ASTs -> SQL text per target, files on disk, and the manifest.

Each target gets, under `target/compiled/<target>/`:
- `features/<entity>.sql`: the feature relation query;
- `segments/<segment>.sql`: the segment's members (one row per key), reading the feature relation;
- `deploy.sql`: the whole build in order (schema, feature relations, one view/table per segment),
  which is exactly what `segsql run` executes and what a warehouse runs directly.
Output is deterministic, and files are replaced atomically: a failed compile leaves the old ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from segsql.build import CompiledProject, Entity, Segment
from segsql.dialects import ENGINES, Engine, lower_portable
from segsql.errors import ExecutionError, SpecError, did_you_mean
from segsql.lineage import Lineage
from segsql.model import ProjectConfig, TargetConfig

MANIFEST_VERSION = 1


# ---------------------------------------------------------------------------------------------
# targets and relation names


@dataclass(frozen=True)
class Target:
    config: TargetConfig
    engine: Engine

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dialect(self) -> str:
        return self.engine.sqlglot_dialect

    @property
    def schema(self) -> str:
        return self.config.dataset or self.config.schema or self.engine.default_schema

    def relation(self, name: str) -> exp.Table:
        """Where segsql puts an object of this name: schema.name, or project.dataset.name on BigQuery."""
        return exp.table_(name, db=self.schema, catalog=self.config.project, quoted=None)

    def schema_expression(self) -> exp.Table:
        return exp.table_(self.schema, db=self.config.project)


def resolve_target(config: ProjectConfig, name: str | None) -> Target:
    """A target by its name in segsql.yml, or by engine name (`postgres`) with default settings."""
    name = name or config.default_target
    if name in config.targets:
        target = config.targets[name]
    else:
        by_engine = [t for t in config.targets.values() if t.engine == name]
        if by_engine:
            target = by_engine[0]
        elif name in ENGINES:
            target = TargetConfig(name=name, engine=name)
        else:
            raise SpecError(
                f"unknown target '{name}'",
                hint=did_you_mean(name, [*config.targets, *ENGINES])
                or "targets: " + ", ".join([*config.targets, *ENGINES]),
            )
    return Target(target, ENGINES[target.engine])


def all_targets(config: ProjectConfig) -> list[Target]:
    return [resolve_target(config, name) for name in config.targets]


# ---------------------------------------------------------------------------------------------
# queries and statements


def feature_query(entity: Entity, target: Target) -> exp.Select:
    return lower_portable(entity.query, target.engine)  # type: ignore[return-value]


def segment_query(
    segment: Segment, entity: Entity, target: Target, standalone: bool = False
) -> exp.Select:
    """SELECT DISTINCT key FROM <feature relation> WHERE <membership>.

    `standalone` inlines the feature relation as a CTE, for pasting into a warehouse console.
    """
    source: exp.Expr = (
        exp.to_table(entity.relation_name) if standalone else target.relation(entity.relation_name)
    )
    predicate = lower_portable(segment.predicate, target.engine)
    query = exp.select(exp.column(entity.key)).distinct().from_(source).where(predicate)
    if standalone:
        features = feature_query(entity, target)
        body = features.copy()
        body.set("with_", None)
        for cte in features.ctes:
            query = query.with_(cte.alias, as_=cte.this)
        query = query.with_(entity.relation_name, as_=body)
    return query


def create_statement(target: Target, name: str, query: exp.Expr, kind: str) -> exp.Create:
    return exp.Create(this=target.relation(name), kind=kind.upper(), replace=True, expression=query)


def deploy_statements(
    compiled: CompiledProject, target: Target, segments: Iterable[str] | None = None
) -> list[exp.Expr]:
    """Everything `run` creates, in dependency order: schema, feature relations, segments."""
    wanted = list(compiled.segments if segments is None else segments)
    statements: list[exp.Expr] = [
        exp.Create(this=target.schema_expression(), kind="SCHEMA", exists=True)
    ]
    entity_names = sorted({compiled.segments[s].entity for s in wanted})
    for name in entity_names:
        entity = compiled.entities[name]
        kind = entity.definition.materialize
        statements.append(
            create_statement(target, entity.relation_name, feature_query(entity, target), kind)
        )
    for name in wanted:
        segment = compiled.segments[name]
        query = segment_query(segment, compiled.entities[segment.entity], target)
        statements.append(create_statement(target, name, query, segment.definition.materialize))
    return statements


def to_sql(expression: exp.Expr, target: Target) -> str:
    return expression.sql(dialect=target.dialect, pretty=True)


# ---------------------------------------------------------------------------------------------
# files


def _comment(text: str) -> str:
    """User text made safe for a `--` comment line (no line breaks can end the comment early)."""
    return " ".join(str(text).split())


def segment_header(compiled: CompiledProject, segment: Segment, target: Target) -> str:
    definition = segment.definition
    root = compiled.project.config.root
    source = f"{_relative(definition.loc.path, root)}:{definition.loc.line}"
    lines = [
        f"segment: {segment.name} ({source})",
        f"entity: {segment.entity} | kind: {definition.kind or '-'} | parent: {definition.parent.name if definition.parent else '-'}",
        f"definition: {definition.definition_hash} | as_of: {compiled.as_of.isoformat()} | target: {target.name} ({target.engine.name})",
    ]
    if definition.description:
        lines.append(f"description: {_comment(definition.description)}")
    return "".join(f"-- {line}\n" for line in lines)


def entity_header(compiled: CompiledProject, entity: Entity, target: Target) -> str:
    definition = entity.definition
    source = f"{_relative(definition.loc.path, compiled.project.config.root)}:{definition.loc.line}"
    lines = [
        f"feature relation of entity: {entity.name} ({source}) - one row per {entity.key}",
        f"as_of: {compiled.as_of.isoformat()} | target: {target.name} ({target.engine.name})",
    ]
    return "".join(f"-- {line}\n" for line in lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def target_files(compiled: CompiledProject, target: Target, segments: list[str]) -> dict[str, str]:
    """Relative path -> file text for one target."""
    files: dict[str, str] = {}
    entity_names = sorted({compiled.segments[s].entity for s in segments})
    for name in entity_names:
        entity = compiled.entities[name]
        files[f"features/{name}.sql"] = (
            entity_header(compiled, entity, target)
            + to_sql(feature_query(entity, target), target)
            + ";\n"
        )
    for name in segments:
        segment = compiled.segments[name]
        query = segment_query(segment, compiled.entities[segment.entity], target)
        files[f"segments/{name}.sql"] = (
            segment_header(compiled, segment, target) + to_sql(query, target) + ";\n"
        )
    deploy = deploy_statements(compiled, target, segments)
    header = f"-- segsql deploy script for project {compiled.project.config.name}, target {target.name} ({target.engine.name}), as_of {compiled.as_of.isoformat()}\n"
    files["deploy.sql"] = (
        header + "".join(to_sql(s, target) + ";\n\n" for s in deploy).rstrip("\n") + "\n"
    )
    return files


def manifest(compiled: CompiledProject, targets: list[Target], out_dir: Path) -> dict[str, Any]:
    root = compiled.project.config.root
    lineage = Lineage(compiled)
    segments: dict[str, Any] = {}
    for name, segment in compiled.segments.items():
        d = segment.definition
        reads = lineage.segment(name)
        segments[name] = {
            "file": _relative(d.loc.path, root),
            "line": d.loc.line,
            "entity": segment.entity,
            "kind": d.kind,
            "description": d.description,
            "owner": d.owner,
            "tags": list(d.tags),
            "parent": d.parent.name if d.parent else None,
            "union": [r.name for r in d.union],
            "intersect": [r.name for r in d.intersect],
            "exclude": [r.name for r in d.exclude],
            "depends_on": sorted(compiled.graph.upstream(name)),
            "children": compiled.graph.downstream(name),
            "columns": list(segment.columns),
            "features": list(reads.features),
            "source_columns": [str(c) for c in reads.source_columns],
            "macros": list(reads.macros),
            "depth": segment.depth,
            "definition_hash": d.definition_hash,
            "compiled": {
                t.name: _relative(out_dir / "compiled" / t.name / "segments" / f"{name}.sql", root)
                for t in targets
            },
        }
    entities = {
        name: {
            "table": e.definition.table,
            "key": e.key,
            "columns": list(e.columns),
            "features": [f.name for f in e.features],
            "relation": e.relation_name,
        }
        for name, e in compiled.entities.items()
    }
    return {
        "manifest_version": MANIFEST_VERSION,
        "project": compiled.project.config.name,
        "as_of": compiled.as_of.isoformat(),
        "targets": {t.name: t.engine.name for t in targets},
        "entities": entities,
        "segments": segments,
    }


def write_compiled(
    out_dir: Path,
    per_target: dict[str, dict[str, str]],
    manifest_data: dict[str, Any],
    replace: bool,
) -> None:
    """Write every target's files; with `replace`, each target folder is swapped in whole (no stale files)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for target_name, files in per_target.items():
            final = out_dir / "compiled" / target_name
            if replace:
                _swap_in_folder(final, files)
            else:
                for rel, text in files.items():
                    write_atomic(final / rel, text)
        write_atomic(
            out_dir / "manifest.json", json.dumps(manifest_data, indent=2, sort_keys=True) + "\n"
        )
    except OSError as exc:
        raise ExecutionError(
            f"cannot write compiled output: {exc}", hint=f"check that {out_dir} is writable"
        ) from None


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _swap_in_folder(final: Path, files: dict[str, str]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.new."))
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
