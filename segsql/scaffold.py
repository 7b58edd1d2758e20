"""`segsql init`: copy the starter project (segsql/templates/init) into a folder."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from segsql.errors import ExecutionError, SpecError
from segsql.files import write_atomic


def scaffold(directory: Path) -> list[Path]:
    """Write the starter files; refuses to overwrite an existing project."""
    if (directory / "segsql.yml").exists():
        raise SpecError(f"{directory / 'segsql.yml'} already exists", hint="choose an empty folder")
    created: list[Path] = []
    try:
        _copy(resources.files("segsql") / "templates" / "init", directory, created)
    except OSError as exc:
        raise ExecutionError(
            f"cannot create the project in {directory}: {exc.strerror or exc}",
            hint="choose a folder you can write to",
        ) from None
    return created


def _copy(source: Traversable, destination: Path, created: list[Path]) -> None:
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        if item.is_dir():
            _copy(item, destination / item.name, created)
        else:
            write_atomic(destination / item.name, item.read_text(encoding="utf-8"))
            created.append(destination / item.name)
