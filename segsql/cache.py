"""The compile cache: a segment's SQL is reused while nothing it is built from has changed.

Recompiling after one edit should cost a fraction of a cold compile, so `segsql compile` keeps,
per target, the text it printed for each segment (its predicate, its query, its deploy
statements, its part of the snapshot) under `target/.cache/`, keyed by the segment's
*fingerprint*: a hash of everything that text is made from:

- segsql's own code and sqlglot's version, segsql.yml, the macro files (project and standard library),
  the variables and as_of;
- the target's engine and settings;
- the segment's entity as built (its feature relation, key and columns, so introspected columns
  count too);
- the segment's own definition (its YAML) and the fingerprints of every segment it reads (parent
  and set operands), so a change reaches every descendant.

An entity's feature relation is kept under the entity's fingerprint, and a text made only of
other texts (a kpis.sql branch: a segment's printed predicate around the printed KPIs) under a
hash of those texts (`text_fingerprint`).
Headers (file and line, which move when a neighbour is edited) are not cached; they are cheap.
Reading a stale entry is impossible by construction (a changed input is a new key), and a cache
file that cannot be read is ignored: the cache only ever saves time.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import __version__ as sqlglot_version  # type: ignore[attr-defined]

from segsql import __version__
from segsql.files import FILE_MODE, write_atomic
from segsql.model import Project, SegmentDef

if TYPE_CHECKING:  # build.py uses this module: no import of it at run time
    from segsql.build import Entity
    from segsql.load import FileDefinitions, ReadFile

CACHE_FORMAT = 2
CACHE_FOLDER = ".cache"


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")  # so ("ab", "c") and ("a", "bc") differ
    return hasher.hexdigest()[:32]


def _file_texts(paths: Iterable[Path]) -> list[str]:
    return [f"{path.name}\n{path.read_text(encoding='utf-8')}" for path in sorted(paths)]


@functools.cache
def segsql_fingerprint() -> str:
    """segsql's own code and standard library, not only its version number: an edited checkout
    (or a development install) must not be served SQL that older code printed."""
    package = resources.files("segsql")
    parts = [__version__]
    for folder in (package, package / "stdlib"):
        for item in sorted(folder.iterdir(), key=lambda i: i.name):
            if item.name.endswith((".py", ".sql")):
                parts.append(f"{item.name}\n{item.read_text(encoding='utf-8')}")
    return _digest(*parts)


def project_fingerprint(project: Project, as_of: dt.date, variables: dict[str, Any]) -> str:
    """What every segment's SQL depends on: versions, segsql.yml, macros, variables, as_of."""
    settings = project.config.loc.path.read_text(encoding="utf-8")
    return _digest(
        segsql_fingerprint(),
        sqlglot_version,
        settings,
        json.dumps(variables, sort_keys=True, default=str),
        as_of.isoformat(),
        ",".join(sorted(project.entities)),  # a segment may not be named like a feature relation
        *_file_texts(project.macro_files),
    )


def entity_fingerprint(entity: Entity, base: str) -> str:
    return _digest(
        base,
        entity.name,
        entity.key,
        ",".join(entity.output_columns),
        entity.definition.materialize,
        entity.query.sql(),
    )


def segment_fingerprint(entity_print: str, definition: SegmentDef, references: list[str]) -> str:
    """A segment's key: its entity, its own YAML, and the keys of the segments it reads."""
    return _digest(entity_print, definition.name, definition.definition_hash, *references)


def target_fingerprint(engine: str, settings: str) -> str:
    return _digest(engine, settings)


def text_fingerprint(*texts: str) -> str:
    """The key of a text made from other texts only (emit.SegmentPrinter.made_of); texts are
    SQL, which holds no NUL, so NUL separates them."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:32]


class TextCache:
    """Printed SQL of one target: fingerprint -> {kind: text}, in one pickle file.

    `save_pending` (or `save`) keeps the entries used by this compile (and, for a partial
    compile, the older ones too), so the file never grows without bound. A process that compiles
    again (`segsql compile --watch`) keeps the cache in memory: `advance` makes what this compile
    used the next one's starting point, `reset` forgets what a failed compile added.
    """

    def __init__(self, path: Path, keep_unused: bool):
        self.path = path
        self.keep_unused = keep_unused
        self._old: dict[str, dict[str, Any]] = _read_entries(path)
        self._used: dict[str, dict[str, Any]] = {}
        # Segment headers as printed by the previous compile of this process, by segment name,
        # with what they were made from (see emit.SegmentPrinter.header); never saved.
        self.headers: dict[str, Header] = {}
        self._headers_used: dict[str, Header] = {}

    def get(self, key: str, kind: str) -> str | None:
        entry = self._used.get(key) or self._old.get(key)
        text = entry.get(kind) if entry else None
        return text if isinstance(text, str) else None

    def put(self, key: str, kind: str, text: str) -> None:
        self._own_entry(key)[kind] = text

    def value(self, key: str, kind: str) -> object | None:
        """What `put_value` stored (an emit.SnapshotLayout, a tuple of texts...), or None."""
        entry = self._used.get(key) or self._old.get(key)
        return entry.get(kind) if entry else None

    def put_value(self, key: str, kind: str, value: object) -> None:
        self._own_entry(key)[kind] = value

    def touch(self, key: str) -> None:
        """Keep an entry that was read (not only those written) in the saved file."""
        if key not in self._used:
            self._used[key] = self._old.get(key, {})  # shared until written (`_own_entry`)

    def remember_header(self, name: str, header: Header) -> None:
        self._headers_used[name] = header

    def _own_entry(self, key: str) -> dict[str, Any]:
        """The entry this compile uses, a copy of the old one: the old entries stay as read."""
        entry = self._used.get(key)
        if entry is None or entry is self._old.get(key):
            entry = self._used[key] = dict(self._old.get(key, {}))
        return entry

    def _entries(self) -> dict[str, dict[str, Any]]:
        return {**self._old, **self._used} if self.keep_unused else self._used

    def save_pending(self, folder: Path) -> Path | None:
        """Write the new cache file into `folder`, a temp folder (None: unchanged);
        `install_cache_file` puts it in place once the compile succeeded."""
        entries = self._entries()
        if entries == self._old:
            return None
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f"{self.path.stem}-", suffix=".pickle")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump((_stamp(), entries), handle, pickle.HIGHEST_PROTOCOL)  # streamed
        return Path(temp)

    def save(self) -> None:
        """Replace the cache file by what this compile used (nothing when that is unchanged)."""
        entries = self._entries()
        if entries != self._old:
            _write_entries(self.path, entries)

    def advance(self) -> None:
        """After a successful compile (and `save`): its entries are what the next one starts from."""
        self._old, self._used = self._entries(), {}
        self.headers, self._headers_used = self._headers_used, {}

    def reset(self) -> None:
        """After a failed compile: the next one starts from the last successful one."""
        self._used, self._headers_used = {}, {}


# A segment file's header with what it is made of: (definition, the rest of it, text).
Header = tuple[SegmentDef, str, str]


def _read_entries(path: Path) -> dict[str, Any]:
    """A cache file's entries; none when it is missing, unreadable or written by other code.

    Cache files are pickles: at 1,000 segments a target's texts take 2 MB, which JSON took
    ~20 ms per target to read and write again, pickle ~4 ms. They are local files written by
    segsql itself, like the rest of target/.cache (never committed), and a file whose stamp is
    not this segsql's (code, format, Python version) is ignored.
    """
    try:
        with path.open("rb") as handle:
            stamp, entries = pickle.load(handle)
    except Exception:  # missing, truncated, corrupt: the cache only ever saves time
        return {}
    return entries if stamp == _stamp() and isinstance(entries, dict) else {}


def _write_entries(path: Path, entries: dict[str, Any]) -> None:
    """What `_read_entries` reads back: the entries with this segsql's stamp."""
    _write_atomic(path, pickle.dumps((_stamp(), entries), pickle.HIGHEST_PROTOCOL))


def _stamp() -> str:
    return _digest(str(CACHE_FORMAT), segsql_fingerprint(), f"python {sys.version_info[:2]}")


def cache_path(out_dir: Path, target_name: str) -> Path:
    return out_dir / CACHE_FOLDER / f"{target_name}.pickle"


class SegmentCache:
    """Fingerprints of segments that built and passed every check, each with its lineage for
    the manifest (features, columns, source columns and macros it reads).

    A known fingerprint lets build.py skip rendering and parsing that segment, and the manifest
    reuse its lineage: with the text cache, an unchanged segment costs a recompile nothing.
    It also keeps each segment's manifest entry as printed (`manifest_texts`, see
    emit.manifest_text), keyed by a digest of the entry.
    """

    def __init__(self, path: Path):
        self.path = path
        stored = _read_entries(path)
        self._old: dict[str, dict[str, Any]] = stored.get("lineage", {})
        self._used: dict[str, dict[str, Any]] = {}
        self._old_texts: dict[str, str] = stored.get("manifest", {})
        self.manifest_texts: dict[str, str] = {}  # what this compile used (and saves)
        # Each segment's manifest entry as the previous compile of this process built it, with
        # what it was made of (emit.manifest), and as it printed it: (entry, digest, text)
        # (emit.manifest_text). Kept in memory only, between the compiles of a watch.
        self.entries_built: dict[str, tuple[SegmentDef, tuple[Any, ...], dict[str, Any]]] = {}
        self.entries_built_used: dict[str, tuple[SegmentDef, tuple[Any, ...], dict[str, Any]]] = {}
        self.entries: dict[str, tuple[dict[str, Any], str, str]] = {}
        self.entries_used: dict[str, tuple[dict[str, Any], str, str]] = {}

    def manifest_text(self, digest: str) -> str | None:
        text = self._old_texts.get(digest)
        if text is not None:
            self.manifest_texts[digest] = text
        return text

    def known(self) -> set[str]:
        return set(self._old)

    def lineage(self, key: str) -> dict[str, Any] | None:
        entry = self._old.get(key)
        if entry is not None:
            self._used[key] = entry
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self._used[key] = entry

    def save(self) -> None:
        if self._used == self._old and self.manifest_texts.keys() == self._old_texts.keys():
            return  # nothing new: leave the file as it is
        stored = {"lineage": self._used, "manifest": self.manifest_texts}
        _write_entries(self.path, stored)

    def advance(self) -> None:
        """After a successful compile (and `save`): what it used is the next one's cache."""
        self._old, self._used = self._used, {}
        self._old_texts, self.manifest_texts = self.manifest_texts, {}
        self.entries, self.entries_used = self.entries_used, {}
        self.entries_built, self.entries_built_used = self.entries_built_used, {}

    def reset(self) -> None:
        """After a failed compile: the next one starts from the last successful one."""
        self._used, self.manifest_texts = {}, {}
        self.entries_used, self.entries_built_used = {}, {}


def install_cache_file(temp: Path, destination: Path) -> None:
    """Move a pending cache file into the cache folder (renamed when it lies beside it)."""
    if temp.parent.parent == destination.parent:
        os.chmod(temp, FILE_MODE)  # mkstemp made it private
        os.replace(temp, destination)
        return
    _write_atomic(destination, temp.read_bytes())
    temp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace the cache file whole; the folder ignores itself in git (like .pytest_cache)."""
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, "*\n")
    write_atomic(path, data)


def segment_cache_path(out_dir: Path) -> Path:
    return out_dir / CACHE_FOLDER / "segments.pickle"


def definitions_cache_path(out_dir: Path) -> Path:
    return out_dir / CACHE_FOLDER / "definitions.pickle"


class DefinitionCache:
    """What each definition file declared (load.FileDefinitions), keyed by the file's path and
    the hash of its bytes, so that a recompile parses and checks only the YAML that changed.

    Only error-free reads are kept, so every error is found again.
    """

    def __init__(self, path: Path):
        self.path = path
        self._old: dict[str, tuple[str, FileDefinitions]] = _read_entries(path)
        self._used: dict[str, tuple[str, FileDefinitions]] = {}
        self._changed = False

    def __call__(self, path: Path, read: ReadFile) -> FileDefinitions | None:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return read(path)[0]  # unreadable: let the loader report it
        key = str(path)
        cached = self._old.get(key)
        if cached is not None and cached[0] == digest:
            self._used[key] = cached
            return cached[1]
        found, error_free = read(path)
        if error_free and found is not None:
            self._used[key] = (digest, found)
            self._changed = True
        return found

    def save(self) -> None:
        if not self._changed and self._used.keys() == self._old.keys():
            return  # every file served from the cache: leave it as it is
        _write_entries(self.path, self._used)

    def advance(self) -> None:
        """After a successful compile (and `save`): its reads are what the next one starts from."""
        self._old, self._used, self._changed = self._used, {}, False

    def reset(self) -> None:
        """After a failed compile: the next one starts from the last successful one."""
        self._used, self._changed = {}, False
