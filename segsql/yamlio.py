"""Read YAML into located nodes, so every later error can point at a file, line and column.

PyYAML's composer (the C one when libyaml is present: ~7x faster) keeps `start_mark` on every node;
we turn its node tree into `YMap` / `YSeq` / `YScalar` and refuse duplicate keys, which YAML
itself would silently let the last one win.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segsql.errors import Location, SpecError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()


@dataclass
class YNode:
    loc: Location

    @property
    def kind(self) -> str:
        return "value"


@dataclass
class YScalar(YNode):
    value: Any = None
    # Where the scalar's text itself starts (after a quote, or on the line after `|`), so a column
    # reported by the SQL parser inside the text maps back to the file.
    content_loc: Location | None = None

    @property
    def kind(self) -> str:
        return type_name(self.value)


@dataclass
class YSeq(YNode):
    items: list[YNode] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "list"


@dataclass
class YMap(YNode):
    items: dict[str, YNode] = field(default_factory=dict)
    key_locs: dict[str, Location] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "mapping"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dt.date):
        return "date"
    return "string"


def load_yaml(path: Path) -> YNode | None:
    """Parse one YAML file; None for an empty file. Syntax errors become a located SpecError."""
    text = read_source(path)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", loc, _syntax_hint(text, mark)) from None
    if node is None:
        return None
    return _convert(node, path, text.splitlines())


def read_source(path: Path) -> str:
    """A project file's text; a file that is not UTF-8 text is a located error, not a crash."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            Location(path, line, 1),
            "save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise SpecError(
            f"cannot read {path.name}: {exc.strerror or exc}",
            Location(path),
            "definition and macro files must be readable text files",
        ) from None


def _syntax_hint(text: str, mark: Any) -> str:
    # YAML forbids tabs in indentation, and PyYAML's message ("found character that cannot
    # start any token") does not say so: name the tab when one is where the parser stopped.
    lines = text.splitlines()
    if mark is not None and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
        return "YAML does not allow tab characters for indentation: indent with spaces"
    return "check indentation and quoting; quote expressions that contain ':' or start with '{'"


def _convert(node: yaml.Node, path: Path, lines: list[str]) -> YNode:
    loc = _location(node.start_mark, path)
    if isinstance(node, yaml.MappingNode):
        result = YMap(loc)
        for key_node, value_node in node.value:
            key = str(_constructor.construct_object(key_node))
            key_loc = _location(key_node.start_mark, path)
            if key in result.items:
                raise SpecError(
                    f"duplicate key '{key}'",
                    key_loc,
                    f"'{key}' is already set at line {result.key_locs[key].line}; keep one",
                )
            result.items[key] = _convert(value_node, path, lines)
            result.key_locs[key] = key_loc
        return result
    if isinstance(node, yaml.SequenceNode):
        return YSeq(loc, [_convert(item, path, lines) for item in node.value])
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = _constructor.construct_object(node)
    except ValueError:  # looks like a timestamp but is not a real date (2024-02-30)
        value = node.value  # kept as text, so the key's reader reports it with its location
    return YScalar(loc, value, _content_location(node, loc, lines))


def _location(mark: Any, path: Path) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


def _content_location(node: yaml.ScalarNode, loc: Location, lines: list[str]) -> Location:
    style = node.style
    if style in ("'", '"'):
        return Location(loc.path, loc.line, loc.col + 1)
    if style in ("|", ">"):
        next_line = lines[loc.line] if loc.line < len(lines) else ""
        indent = len(next_line) - len(next_line.lstrip(" "))
        return Location(loc.path, loc.line + 1, indent + 1)
    return loc
