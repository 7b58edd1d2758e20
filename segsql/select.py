"""The selector language shared by every command that takes `--select`.

`name`, `+name` (with its ancestors), `name+` (with its descendants), `tag:x`, `kind:x`, `owner:x`,
`entity:x`, `path:segments/value/`, `state:modified` (changed since the git revision in
$SEGSQL_STATE, see `segsql.state`); several selectors separated by spaces or commas are a union.
The result keeps the project's dependency order, so parents come before children.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from segsql.build import CompiledProject
from segsql.errors import SpecError, did_you_mean
from segsql.model import Project, SegmentDef

METHODS: dict[str, Callable[[SegmentDef, CompiledProject, str], bool]] = {
    "tag": lambda s, c, v: v in s.tags,
    "kind": lambda s, c, v: s.kind == v,
    "owner": lambda s, c, v: s.owner == v,
    "entity": lambda s, c, v: c.segments[s.name].entity == v,
    "path": lambda s, c, v: _relative(s, c).startswith(v.rstrip("*")),
}


_EXAMPLES = {"tag": "core", "kind": "value", "path": "segments/value/", "state": "modified"}


def _tokens(selectors: Sequence[str] | None) -> list[str]:
    return [t for s in (selectors or []) for t in s.replace(",", " ").split()]


def check_segment_names(project: Project, selectors: Sequence[str] | None) -> None:
    """Refuse a selector naming no segment of the definitions, before anything is built: `run`
    would otherwise connect and load seeds first."""
    for token in _tokens(selectors):
        name = token.strip("+")
        if ":" not in name and name not in project.segments:
            raise _no_segment(name, project.segments)


def _no_segment(name: str, known: Iterable[str]) -> SpecError:
    return SpecError(
        f"no segment named '{name}'", hint=did_you_mean(name, known) or "see `segsql list`"
    )


def select_segments(compiled: CompiledProject, selectors: Sequence[str] | None) -> list[str]:
    """Segment names matching any selector (all segments when none is given), in dependency order."""
    tokens = _tokens(selectors)
    if not tokens:
        return list(compiled.segments)
    chosen: set[str] = set()
    for token in tokens:
        chosen |= _select_one(compiled, token)
    return [name for name in compiled.segments if name in chosen]


def _select_one(compiled: CompiledProject, token: str) -> set[str]:
    with_ancestors = token.startswith("+")
    with_descendants = token.endswith("+")
    core = token.strip("+")
    method, _, value = core.partition(":")
    if value and method == "state":
        from segsql.state import state_selection  # reads git only when the selector is used

        matched = state_selection(compiled, value)
    elif not value and core.endswith(":") and method in {*METHODS, "state"}:
        raise SpecError(
            f"selector '{token}' names no {method}",
            hint=f"write the value after the colon, e.g. `{method}:{_EXAMPLES.get(method, 'x')}`",
        )
    elif value and method in METHODS:
        test = METHODS[method]
        matched = {n for n, s in compiled.project.segments.items() if test(s, compiled, value)}
    elif value:
        raise SpecError(
            f"unknown selector method '{method}:'",
            hint=did_you_mean(method, [*METHODS, "state"])
            or "methods: " + ", ".join([*METHODS, "state"]),
        )
    elif core in compiled.segments:
        matched = {core}
    else:
        raise _no_segment(core, compiled.segments)
    result = set(matched)
    for name in matched:
        if with_ancestors:
            result |= compiled.graph.ancestors(name)
        if with_descendants:
            result |= compiled.graph.descendants(name)
    return result


def _relative(segment: SegmentDef, compiled: CompiledProject) -> str:
    root = compiled.project.config.root.resolve()
    path = segment.loc.path.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
