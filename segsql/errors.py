"""User-facing errors: every one names a file, line and column, shows the source, and gives a hint.

Spec errors (bad definitions) exit with code 2, runtime errors (the warehouse failed) with code 1.
A stage collects every spec error it can find before failing, so one `segsql validate` shows them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPEC_EXIT_CODE = 2
RUNTIME_EXIT_CODE = 1
CONTEXT_LINES = 2


@dataclass(frozen=True, order=True)
class Location:
    """A position in a source file; line and col are 1-based."""

    path: Path
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if not self.line:
            return str(self.path)
        return f"{self.path}:{self.line}:{self.col}"

    def shifted(self, line_offset: int, col: int) -> Location:
        """The position `line_offset` lines below this one, at `col` (relative when on the same line)."""
        if line_offset == 0:
            return Location(self.path, self.line, self.col + col - 1)
        return Location(self.path, self.line + line_offset, col)


class SegsqlError(Exception):
    """A problem the user can fix; rendered without a Python traceback."""

    exit_code = SPEC_EXIT_CODE
    label = "error"

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def render(self, root: Path | None = None) -> str:
        where = _relative(self.location, root)
        head = (
            f"{where}: {self.label}: {self.message}" if where else f"{self.label}: {self.message}"
        )
        lines = [head]
        if self.location is not None and self.location.line:
            lines.extend(source_excerpt(self.location))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class SpecError(SegsqlError):
    """The project's definitions are wrong (exit code 2)."""


class ExecutionError(SegsqlError):
    """The warehouse or the file system refused something (exit code 1)."""

    exit_code = RUNTIME_EXIT_CODE
    label = "runtime error"


class SpecErrors(SegsqlError):
    """Several spec errors found by one stage, reported together."""

    def __init__(self, errors: list[SegsqlError]):
        self.errors = sorted(errors, key=_sort_key)
        super().__init__(f"{len(self.errors)} error(s) in the project")

    def render(self, root: Path | None = None) -> str:
        parts = [error.render(root) for error in self.errors]
        parts.append(f"{len(self.errors)} error(s) found; nothing was written.")
        return "\n\n".join(parts)


class ErrorCollector:
    """Gathers spec errors during a stage; `raise_if_any` ends the stage when something was wrong."""

    def __init__(self) -> None:
        self.errors: list[SegsqlError] = []

    def add(self, message: str, location: Location | None = None, hint: str | None = None) -> None:
        self.errors.append(SpecError(message, location, hint))

    def extend(self, errors: Iterable[SegsqlError]) -> None:
        for error in errors:
            self.errors.extend(error.errors if isinstance(error, SpecErrors) else [error])

    def raise_if_any(self) -> None:
        if self.errors:
            raise SpecErrors(self.errors)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest known names, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def source_excerpt(location: Location) -> list[str]:
    """Numbered source lines around `location`, with a caret under the column (as dbt and rustc do)."""
    try:
        # errors="replace": the excerpt of a file that is not UTF-8 still shows where it is wrong
        text = location.path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    first = max(1, location.line - CONTEXT_LINES)
    last = min(len(text), location.line + CONTEXT_LINES)
    width = len(str(last))
    out = []
    for number in range(first, last + 1):
        out.append(f"  {number:>{width}} | {text[number - 1]}")
        if number == location.line:
            out.append(f"  {'':>{width}} | {' ' * max(0, location.col - 1)}^")
    return out


def _relative(location: Location | None, root: Path | None) -> str:
    if location is None:
        return ""
    if root is not None:
        try:
            rel = location.path.resolve().relative_to(root.resolve())
            return str(Location(rel, location.line, location.col))
        except ValueError:
            pass
    return str(location)


def _sort_key(error: SegsqlError) -> tuple[str, int, int, str]:
    loc = error.location
    if loc is None:
        return ("", 0, 0, error.message)
    return (str(loc.path), loc.line, loc.col, error.message)
