"""`segsql test`, on a target: declared data tests and the invariants every project must keep.

Data tests are declared on a segment (`tests: [not_empty, {min_size: 100}]`); invariants need no
declaration: a child is a subset of its parent, a `union` / `intersect` / `exclude` segment obeys
its definition, and segments of one `exclusive` group (named in YAML, or the siblings marked
`exclusive: true`) share no member. Every check is a set of keys built as a sqlglot AST (a
segment's members, or the keys that violate an invariant), and all checks of one entity are
counted in a single query; only failed invariants pay for a second query that fetches a few
offending keys. Members come from the current definitions evaluated inline
(nothing is written), or, with `deployed=True`, from the views/tables `segsql run` created, where
tables refreshed at different times can really drift apart.

Unit tests with fixtures live in `segsql.unit`; both report `CheckResult`s, rendered here as JUnit.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp

from segsql.build import CompiledProject, Segment
from segsql.dialects import lower_portable
from segsql.emit import Target, feature_ctes
from segsql.errors import ExecutionError, Location, SpecError
from segsql.model import DataTest
from segsql.run import Runner

KEY = "segsql_key"
EXAMPLES = 5  # offending keys shown per failed invariant


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, whatever its kind."""

    suite: str  # "data", "invariant" or "unit"
    segment: str  # the segment checked (a unit test's name for unit tests)
    name: str
    passed: bool
    message: str
    details: tuple[str, ...] = ()
    loc: Location | None = None
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# checks: each one is a set of keys to count


@dataclass(frozen=True)
class KeySet:
    """A check's key set: members (data tests read the count) or violations (must be empty)."""

    id: str
    segment: str
    name: str
    query: exp.Query
    violation: bool
    loc: Location | None = None


def members_cte(name: str) -> str:
    return f"segsql_m_{name}"


def _members(name: str) -> exp.Select:
    return exp.select(KEY).from_(members_cte(name))


def _union(names: Iterable[str]) -> exp.Query:
    queries: list[exp.Query] = [_members(n) for n in names]
    result = queries[0]
    for query in queries[1:]:
        result = exp.union(result, query, distinct=True, copy=False)
    return result


def _intersection(names: Iterable[str]) -> exp.Query:
    queries: list[exp.Query] = [_members(n) for n in names]
    result = queries[0]
    for query in queries[1:]:
        result = exp.intersect(result, query, distinct=True, copy=False)
    return result


def _except(left: exp.Query, right: exp.Query) -> exp.Query:
    return exp.except_(_operand(left), _operand(right), distinct=True, copy=False)


def _operand(query: exp.Query) -> exp.Query:
    """A set operation wrapped as a subquery: SQL chains them left to right, INTERSECT first."""
    if isinstance(query, exp.SetOperation):
        return exp.select(KEY).from_(query.subquery("operand"))
    return query


def invariant_checks(segment: Segment) -> list[KeySet]:
    """What a segment's definition promises about its members, as sets that must be empty."""
    d = segment.definition
    name, loc = segment.name, d.loc
    checks: list[KeySet] = []

    def add(kind: str, label: str, violations: exp.Query) -> None:
        checks.append(KeySet(f"{kind}:{name}:{len(checks)}", name, label, violations, True, loc))

    if d.parent:
        add(
            "subset",
            f"subset of parent {d.parent.name}",
            _except(_members(name), _members(d.parent.name)),
        )
    only_set_algebra = not d.where and d.parent is None
    if d.union:
        operands = [r.name for r in d.union]
        add(
            "union",
            f"within union of {', '.join(operands)}",
            _except(_members(name), _union(operands)),
        )
        if only_set_algebra and not d.intersect and not d.exclude:
            add(
                "union",
                f"holds all of {', '.join(operands)}",
                _except(_union(operands), _members(name)),
            )
    for ref in d.intersect:
        add(
            "intersect",
            f"within intersected {ref.name}",
            _except(_members(name), _members(ref.name)),
        )
    if d.intersect and only_set_algebra and not d.union and not d.exclude:
        operands = [r.name for r in d.intersect]
        add(
            "intersect",
            f"holds all of {' & '.join(operands)}",
            _except(_intersection(operands), _members(name)),
        )
    for ref in d.exclude:
        add(
            "exclude", f"shares no member with excluded {ref.name}", _intersection([name, ref.name])
        )
    return checks


def exclusive_groups(compiled: CompiledProject) -> dict[str, list[str]]:
    """Group name -> its segments (dependency order); a group must hold segments of one entity."""
    groups: dict[str, list[str]] = {}
    for name, segment in compiled.segments.items():
        if segment.definition.exclusive:
            groups.setdefault(segment.definition.exclusive, []).append(name)
    for group, names in groups.items():
        entities = {compiled.segments[n].entity for n in names}
        if len(entities) > 1:
            raise SpecError(
                f"exclusive group '{group}' mixes entities: {', '.join(sorted(entities))}",
                compiled.segments[names[-1]].definition.loc,
                "only segments of one entity can be mutually exclusive",
            )
    return groups


def exclusive_checks(
    compiled: CompiledProject, group: str, names: list[str], selected: set[str]
) -> list[KeySet]:
    """One check per pair of the group that involves a selected segment (located at the first
    segment of the pair, the one the report lists it under)."""
    checks = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if first in selected or second in selected:
                checks.append(
                    KeySet(
                        f"exclusive:{group}:{first}:{second}",
                        first,
                        f"exclusive group {group}: no member shared with {second}",
                        _intersection([first, second]),
                        True,
                        compiled.segments[first].definition.loc,
                    )
                )
    return checks


def size_check(name: str) -> KeySet:
    return KeySet(f"size:{name}", name, "size", _members(name), False)


# ---------------------------------------------------------------------------------------------
# the queries: one per entity (plus one for the examples of failed invariants)


@dataclass
class EntityChecks:
    entity: str
    segments: set[str] = field(default_factory=set)  # whose members the checks read
    checks: list[KeySet] = field(default_factory=list)


def plan_checks(compiled: CompiledProject, selected: list[str]) -> dict[str, EntityChecks]:
    """Every key set to count, grouped by entity (one query each)."""
    plans: dict[str, EntityChecks] = {}

    def plan(name: str) -> EntityChecks:
        entity = compiled.segments[name].entity
        return plans.setdefault(entity, EntityChecks(entity))

    def add(check: KeySet, needs: Iterable[str]) -> None:
        entry = plan(check.segment)
        entry.checks.append(check)
        entry.segments.update(needs)

    for name in selected:
        segment = compiled.segments[name]
        refs = [r.name for r in segment.definition.references]
        for check in invariant_checks(segment):
            add(check, [name, *refs])
        add(size_check(name), [name])
        parent = segment.definition.parent
        if parent is not None and any(
            "share_of_parent" in t.kind for t in segment.definition.tests
        ):
            add(size_check(parent.name), [parent.name])
    for group, names in exclusive_groups(compiled).items():
        for check in exclusive_checks(compiled, group, names, set(selected)):
            add(check, names)
    for entry in plans.values():
        entry.checks = list({c.id: c for c in entry.checks}.values())
    return plans


def member_query(
    compiled: CompiledProject, name: str, target: Target, deployed: bool
) -> exp.Select:
    """A segment's member keys: from its deployed relation, or from its predicate (inline)."""
    segment = compiled.segments[name]
    entity = compiled.entities[segment.entity]
    key = exp.alias_(exp.column(entity.key), KEY)
    if deployed:
        return exp.select(key).from_(target.relation(name))
    predicate = lower_portable(segment.predicate, target.engine)
    return exp.select(key).distinct().from_(entity.relation_name).where(predicate)


def with_members(
    query: exp.Query, compiled: CompiledProject, plan: EntityChecks, target: Target, deployed: bool
) -> exp.Query:
    """Attach the CTEs the checks read: the feature relation (inline) and each segment's members."""
    ctes: list[tuple[str, exp.Query]] = []
    if not deployed:
        ctes += feature_ctes(compiled.entities[plan.entity], target)
    for name in compiled.segments:  # dependency order
        if name in plan.segments:
            ctes.append((members_cte(name), member_query(compiled, name, target, deployed)))
    for alias, cte_body in ctes:
        query = query.with_(alias, as_=cte_body, copy=False)  # the tree is ours: no copies
    return query


def _union_all(parts: list[exp.Select]) -> exp.Query:
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False, copy=False)
    return query


def count_query(plan: EntityChecks) -> list[exp.Select]:
    return [
        exp.select(
            exp.alias_(exp.Literal.string(check.id), "check_id"),
            exp.alias_(exp.func("COUNT", exp.Star()), "n"),
        ).from_(check.query.subquery("v"))
        for check in plan.checks
    ]


def examples_query(checks: list[KeySet]) -> list[exp.Select]:
    """Up to EXAMPLES offending keys per failed invariant, as text."""
    parts = []
    for check in checks:
        sample = exp.select(KEY).from_(check.query.subquery("v")).order_by(KEY).limit(EXAMPLES)
        parts.append(
            exp.select(
                exp.alias_(exp.Literal.string(check.id), "check_id"),
                exp.alias_(exp.cast(exp.column(KEY), exp.DataType.Type.TEXT), KEY),
            ).from_(sample.subquery("s"))
        )
    return parts


def _run(runner: Runner, query: exp.Query, deployed: bool) -> list[tuple[object, ...]]:
    try:
        return runner.query(query)
    except ExecutionError as exc:
        hint = (
            "--deployed reads the views/tables of `segsql run`: run it first on this target"
            if deployed
            else "check that the source tables exist on this target (`segsql seed` loads seed files)"
        )
        raise ExecutionError(exc.message, exc.location, hint) from None


# ---------------------------------------------------------------------------------------------
# judging


def run_checks(
    runner: Runner, compiled: CompiledProject, selected: list[str], deployed: bool = False
) -> list[CheckResult]:
    """Data tests and invariants of the selected segments on the runner's target."""
    results: list[CheckResult] = []
    for plan in plan_checks(compiled, selected).values():
        if not plan.checks:
            continue
        started = time.perf_counter()
        query = with_members(_union_all(count_query(plan)), compiled, plan, runner.target, deployed)
        counts = {str(check): int(str(n)) for check, n in _run(runner, query, deployed)}
        failed = [c for c in plan.checks if c.violation and counts[c.id] > 0]
        examples: dict[str, list[str]] = {}
        if failed:
            sample = with_members(
                _union_all(examples_query(failed)), compiled, plan, runner.target, deployed
            )
            for check_id, key in _run(runner, sample, deployed):
                examples.setdefault(str(check_id), []).append(str(key))
        seconds = (time.perf_counter() - started) / max(1, len(plan.checks))
        for check in plan.checks:
            if check.violation:
                results.append(_judge_invariant(check, counts[check.id], examples, seconds))
        for name in selected:
            if compiled.segments[name].entity == plan.entity:
                results += _judge_data_tests(compiled.segments[name], counts, seconds)
    order = {name: i for i, name in enumerate(compiled.segments)}
    return sorted(results, key=lambda r: (order.get(r.segment, 0), r.suite))


def _judge_invariant(
    check: KeySet, count: int, examples: dict[str, list[str]], seconds: float
) -> CheckResult:
    if count == 0:
        return CheckResult(
            "invariant", check.segment, check.name, True, "holds", (), check.loc, seconds
        )
    keys = examples.get(check.id, [])
    more = f" (first {len(keys)}: {', '.join(keys)})" if keys else ""
    return CheckResult(
        "invariant",
        check.segment,
        check.name,
        False,
        f"{count} offending member(s){more}",
        tuple(f"offending key: {k}" for k in keys),
        check.loc,
        seconds,
    )


def _judge_data_tests(
    segment: Segment, counts: dict[str, int], seconds: float
) -> list[CheckResult]:
    size = counts[f"size:{segment.name}"]
    parent = segment.definition.parent
    parent_size = counts.get(f"size:{parent.name}") if parent else None
    out = []
    for test in segment.definition.tests:
        passed, message = judge(test, size, parent_size, segment.name)
        out.append(
            CheckResult("data", segment.name, str(test), passed, message, (), test.loc, seconds)
        )
    return out


def judge(test: DataTest, size: int, parent_size: int | None, segment: str) -> tuple[bool, str]:
    """Whether a data test passes for a segment of `size` members, and what was measured."""
    limit = test.value or 0.0
    if test.kind == "not_empty":
        return size > 0, f"{size} member(s)"
    if test.kind == "min_size":
        return size >= limit, f"{size} member(s), at least {limit:g} expected"
    if test.kind == "max_size":
        return size <= limit, f"{size} member(s), at most {limit:g} expected"
    if parent_size is None:
        raise SpecError(
            f"data test '{test.kind}' on segment '{segment}' needs a parent",
            test.loc,
            "give the segment a `parent:`, or use min_size / max_size",
        )
    share = size / parent_size if parent_size else 0.0
    measured = f"{share:.1%} of parent ({size} of {parent_size})"
    if test.kind == "min_share_of_parent":
        return share >= limit, f"{measured}, at least {limit:.1%} expected"
    return share <= limit, f"{measured}, at most {limit:.1%} expected"


# ---------------------------------------------------------------------------------------------
# JUnit XML (the dialect Jenkins, GitLab and GitHub test reporters read)


def junit_xml(results: list[CheckResult], root: Path | None = None) -> str:
    suites = ET.Element("testsuites", name="segsql")
    _counts(suites, results)
    for suite_name in ("unit", "data", "invariant"):
        members = [r for r in results if r.suite == suite_name]
        if not members:
            continue
        suite = ET.SubElement(suites, "testsuite", name=f"segsql.{suite_name}")
        _counts(suite, members)
        for result in members:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"segsql.{suite_name}.{result.segment}",
                name=result.name,
                time=f"{result.seconds:.3f}",
            )
            if result.loc is not None:
                case.set("file", _relative(result.loc.path, root))
                case.set("line", str(result.loc.line))
            if not result.passed:
                failure = ET.SubElement(case, "failure", message=result.message, type=suite_name)
                failure.text = "\n".join([result.message, *result.details])
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _counts(element: ET.Element, results: list[CheckResult]) -> None:
    element.set("tests", str(len(results)))
    element.set("failures", str(sum(not r.passed for r in results)))
    element.set("errors", "0")
    element.set("skipped", "0")
    element.set("time", f"{sum(r.seconds for r in results):.3f}")


def _relative(path: Path, root: Path | None) -> str:
    if root is not None and path.resolve().is_relative_to(root.resolve()):
        return path.resolve().relative_to(root.resolve()).as_posix()
    return path.as_posix()
