"""The stages chained: load -> build (render, parse, resolve) -> emit / run.

Commands call these; each returns typed data for the next stage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segsql.build import ColumnLookup, CompiledProject, build_project
from segsql.cache import (
    CACHE_FOLDER,
    DefinitionCache,
    SegmentCache,
    TextCache,
    cache_path,
    definitions_cache_path,
    install_cache_file,
    segment_cache_path,
)
from segsql.emit import (
    Target,
    WrittenOutput,
    compiled_folder,
    manifest,
    remove_staged,
    resolve_target,
    stage_folder,
    target_files,
    write_compiled,
)
from segsql.errors import ExecutionError, Location, SpecError
from segsql.load import DefinitionReader, load_project
from segsql.model import Project


def parse_as_of(value: Any, source: str = "--as-of", loc: Location | None = None) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(
            f"invalid date '{value}' in {source}",
            loc,
            hint="write dates as YYYY-MM-DD, e.g. 2024-06-30",
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
    from_file = as_of is None and "as_of" not in overrides
    where = "segsql.yml vars.as_of" if from_file else "--as-of"
    day = parse_as_of(variables["as_of"], where, project.config.loc if from_file else None)
    variables["as_of"] = day.isoformat()
    return day, variables


def compile_project(
    root: Path,
    as_of: str | None = None,
    overrides: dict[str, Any] | None = None,
    introspect: ColumnLookup | None = None,
    known: Container[str] | None = None,
    reader: DefinitionReader | None = None,
) -> CompiledProject:
    """Load and build; with `known`, segments whose fingerprint is known are resolved only
    when read (see build_project); `reader` serves unchanged definition files from a cache."""
    project = load_project(root, reader)
    day, variables = effective_vars(project, overrides or {}, as_of)
    return build_project(project, day, variables, introspect, known)


@contextlib.contextmanager
def compile_heap() -> Iterator[Callable[[], None]]:
    """Python's garbage collector tuned for one compile; yields `settle`, to call once the
    project is built.

    A compile builds hundreds of thousands of sqlglot nodes that live until it ends, and the
    collector's full (oldest-generation) passes walked them all again and again: 17-20 % of a
    1,000-segment compile. `settle` freezes what exists then (the built project: never
    collected, and forked workers do not touch its pages either), and full passes are off
    until the compile ends. Young garbage is still collected as usual.
    """
    threshold = gc.get_threshold()
    gc.set_threshold(threshold[0], threshold[1], FULL_COLLECTIONS_OFF)
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


FULL_COLLECTIONS_OFF = 1_000_000_000  # young collections before a full one: never, in practice


def target_of(compiled: CompiledProject, name: str | None) -> Target:
    return resolve_target(compiled.project.config, name)


# Below this many segments a worker process costs more than it saves.
PARALLEL_MIN_SEGMENTS = 200
_forked: tuple[CompiledProject, list[Target], list[str], CacheSetup | None, bool] | None = None


@dataclass
class CacheSetup:
    """The compile cache of one output folder (see segsql/cache.py).

    Nothing is written while the compile may still fail: a target emitted in a worker process
    leaves its new cache file in a temp folder of this compile (`pending`), the others stay in
    memory (`texts`), until `install` writes them, after the output was written; `discard`
    removes the temp folder whatever happened (a worker's files included). A process that
    compiles again (`segsql compile --watch`) keeps the setup: `advance` after a successful
    compile, `reset` after a failed one.
    """

    out_dir: Path
    partial: bool  # a --select compile keeps the other segments' entries
    segments: SegmentCache = field(init=False)
    definitions: DefinitionCache = field(init=False)
    texts: dict[str, TextCache] = field(default_factory=dict)  # target -> its cache, in memory
    staging: Path | None = None  # made by emit_targets, before any worker is forked
    pending: list[tuple[Path, Path]] = field(default_factory=list)  # (temp file, destination)

    def __post_init__(self) -> None:
        self.segments = SegmentCache(segment_cache_path(self.out_dir))
        self.definitions = DefinitionCache(definitions_cache_path(self.out_dir))

    def staging_folder(self) -> Path:
        if self.staging is None:
            # Inside an existing cache folder the files are renamed into place; a first
            # compile must not create that folder before it succeeds, so it stages in /tmp.
            folder = self.out_dir / CACHE_FOLDER
            inside = str(folder) if folder.is_dir() else None
            self.staging = Path(tempfile.mkdtemp(prefix=".pending-", dir=inside))
        return self.staging

    def text_cache(self, target: Target) -> TextCache:
        cache = self.texts.get(target.name)
        if cache is None:
            cache = TextCache(cache_path(self.out_dir, target.name), keep_unused=self.partial)
            self.texts[target.name] = cache
        return cache

    def install(self) -> None:
        with contextlib.suppress(OSError):  # an unwritable cache costs the next compile time only
            for temp, destination in self.pending:
                install_cache_file(temp, destination)
            for cache in self.texts.values():
                cache.save()
            self.segments.save()
            self.definitions.save()
        self.discard()

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        self.pending.clear()

    def advance(self) -> None:
        """After a successful compile and `install`: its caches are the next compile's."""
        for cache in self.texts.values():
            cache.advance()
        self.segments.advance()
        self.definitions.advance()

    def reset(self) -> None:
        """After a failed compile: the next one starts from the last successful one's caches."""
        for cache in self.texts.values():
            cache.reset()
        self.segments.reset()
        self.definitions.reset()


@dataclass(frozen=True)
class Written:
    """What a compile wrote: its output files (of all targets, the manifest aside) and how many
    of them it had to write or remove."""

    files: int
    changed: int


def write_targets(
    compiled: CompiledProject,
    targets: list[Target],
    names: list[str],
    folder: Path,
    cache: CacheSetup,
    written: WrittenOutput | None = None,
    inspect: Callable[[dict[str, dict[str, str]]], None] | None = None,
) -> Written:
    """Emit the segments `names` for every target and write them, with the manifest, under
    `folder`; a full compile (not `cache.partial`) makes each target's folder hold exactly its
    files. `inspect` sees every target's files before anything is written (--check-sql);
    `written` is what this process wrote last (see emit.WrittenOutput). The cache is left for
    the caller to `install` once the output is written (and to `discard` in any case)."""
    # a first compile's target folders are written by the workers that print them
    staged: dict[str, Path] | None = None if cache.partial else {}
    created = [f for f in (folder, folder / "compiled") if not f.exists()]
    try:
        per_target = emit_targets(compiled, targets, names, cache, staged)
        if inspect is not None:
            inspect(per_target)
        data = manifest(compiled, targets, folder, cache.segments)
        replace = not cache.partial
        changed = write_compiled(folder, per_target, data, replace, cache.segments, staged, written)
    except OSError as exc:  # staging the folders (while emitting) or writing them
        raise ExecutionError(
            f"cannot write compiled output: {exc}", hint=f"check that {folder} is writable"
        ) from None
    finally:
        if staged is not None:
            remove_staged(folder, created)  # those not swapped in: the compile failed
    return Written(sum(len(files) for files in per_target.values()), changed)


def emit_targets(
    compiled: CompiledProject,
    targets: list[Target],
    names: list[str],
    cache: CacheSetup | None = None,
    staged: dict[str, Path] | None = None,
) -> dict[str, dict[str, str]]:
    """Every target's files (relative path -> text); targets are generated on all cores at once.

    Workers are forked, so they share the compiled project without pickling its trees; only the
    finished text comes back. Output is identical to the sequential path (same function, same input).
    With `cache`, each target reuses the text of segments that did not change, and only the
    changed ones count towards forking. With `staged` (and `cache`), a target that has no
    output folder yet gets one written beside its place by whoever printed it, so a first
    compile writes its thousands of files on all cores; `staged` receives those folders
    (emit.write_compiled renames them in, emit.remove_staged deletes what is left).
    """
    cores = os.cpu_count() or 1
    fork = "fork" in multiprocessing.get_all_start_methods()
    if cache is not None:
        cache.staging_folder()  # so forked workers write where the parent will clean up
    known = cache.segments.known() if cache else set()
    changed = sum(compiled.fingerprints.get(n) not in known for n in names)
    stage = staged is not None
    if len(targets) < 2 or changed < PARALLEL_MIN_SEGMENTS or cores < 2 or not fork:
        results = [_cached_target_files(compiled, t, names, cache, stage) for t in targets]
        return _collect(targets, results, cache, staged)
    from concurrent.futures import ProcessPoolExecutor  # here: most compiles never fork

    global _forked
    _forked = (compiled, targets, names, cache, stage)
    try:
        context = multiprocessing.get_context("fork")
        # A worker per target even on fewer cores: 3 targets on 2 cores as 2 workers finish
        # after 2 targets' time; 3 processes sharing the cores finish after 1.5.
        workers = len(targets)
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(_target_files_in_worker, range(len(targets))))
    except Exception:
        # A worker failed (e.g. a user error found while emitting): redo the work here, so the
        # error is raised as itself, with its location, rather than through pickling.
        results = [_cached_target_files(compiled, t, names, cache, stage) for t in targets]
    finally:
        _forked = None
    return _collect(targets, results, cache, staged)


@dataclass(frozen=True)
class _Emitted:
    files: dict[str, str]
    pending_cache: tuple[Path, Path] | None  # (new cache file, where it goes)
    staged: Path | None  # the target's output folder, written beside its place
    in_worker: bool = False  # its text cache was updated in a worker, not in this process


def _collect(
    targets: list[Target],
    results: list[_Emitted],
    cache: CacheSetup | None,
    staged: dict[str, Path] | None,
) -> dict[str, dict[str, str]]:
    for target, result in zip(targets, results, strict=True):
        if cache is not None and result.pending_cache is not None:
            cache.pending.append(result.pending_cache)
        if cache is not None and result.in_worker:
            # what the worker's cache learnt died with it: the next compile reads the file
            cache.texts.pop(target.name, None)
        if staged is not None and result.staged is not None:
            staged[target.name] = result.staged
    return {t.name: result.files for t, result in zip(targets, results, strict=True)}


def _cached_target_files(
    compiled: CompiledProject,
    target: Target,
    names: list[str],
    setup: CacheSetup | None,
    stage: bool = False,
    in_worker: bool = False,
) -> _Emitted:
    if setup is None:
        return _Emitted(target_files(compiled, target, names), None, None)
    cache = setup.text_cache(target)
    files = target_files(compiled, target, names, cache, compiled.fingerprints)
    # A worker's cache is written before it exits; the parent's waits in memory for `install`.
    temp = cache.save_pending(setup.staging_folder()) if in_worker else None
    final = compiled_folder(setup.out_dir, target.name)
    staged = stage_folder(final, files) if stage and not final.is_dir() else None
    return _Emitted(files, (temp, cache.path) if temp else None, staged, in_worker)


def _target_files_in_worker(index: int) -> _Emitted:
    assert _forked is not None, "emit_targets sets the project before forking"
    compiled, targets, names, cache, stage = _forked
    return _cached_target_files(compiled, targets[index], names, cache, stage, in_worker=True)
