"""Per-engine differences, in one place (after Ibis's tables of per-dialect rules).

sqlglot transpiles most SQL faithfully. Where it cannot know what we mean (date differences
between values of unknown type, hashing...), expressions use `segsql_*` portable functions, which
`lower_portable` replaces per engine with a form that means the same thing everywhere.
An engine overrides only what differs from `DEFAULT_LOWERINGS`.

Where sqlglot's own translation of a DuckDB-flavoured node is wrong or invalid on an engine
(day-of-week numbering, week functions), the engine's `rewrites` fix that node type; each rule is
covered by tests/test_portable.py, which executes it on DuckDB and PostgreSQL and analyses the
BigQuery form with ZetaSQL.

Rules every engine follows (each with a test in tests/test_portable.py):
- `a / b` divides as floating point (DuckDB's meaning; sqlglot casts on PostgreSQL), `a // b`
  truncates toward zero, and a division by zero is an error on DuckDB and PostgreSQL alike: use
  `segsql_safe_divide`.
- NULLs sort last in ascending and descending orders (DuckDB's rule; sqlglot writes NULLS LAST).
- LIKE has no escape character (DuckDB's rule): PostgreSQL and BigQuery get backslashes doubled.
- `dayofweek()` counts 0 = Sunday, `isodow()` 1 = Monday, `week()`/`weekofyear()` is the ISO week.
- TIMESTAMPTZ values become dates in UTC: the DuckDB and PostgreSQL runners set the session time
  zone to UTC, which is what BigQuery always does.
- String order is byte order: true on DuckDB and BigQuery, and on PostgreSQL under the C or
  C.UTF-8 collation (a database with a linguistic collation such as en_US sorts differently).

Portable functions:
- `segsql_days_between(a, b)`: whole calendar days from a to b (DATE and TIMESTAMP alike).
- `segsql_hash_bucket(key, n)`: a deterministic bucket in [0, n) for a key, the same on every
  engine: `int(md5(CAST(key AS text)).hexdigest()[:8], 16) % n`, i.e. the first 32 bits of the MD5
  of the key's text form (integers and strings; NULL keys give NULL). Plain Python agrees:
  `int(hashlib.md5(str(key).encode()).hexdigest()[:8], 16) % n`.
- `segsql_safe_divide(a, b)`: a / b as a floating-point division, NULL when b is 0 or NULL (never
  an error: DuckDB and PostgreSQL both fail on a division by zero).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

Lowering = Callable[[list[exp.Expr]], exp.Expr]
Rewrite = Callable[[exp.Expr], exp.Expr]
HASH_HEX_DIGITS = 8  # 32 bits: fits a signed 64-bit integer on every engine


def _as_date(value: exp.Expr) -> exp.Expr:
    if isinstance(value, exp.Cast) and value.to.is_type(exp.DataType.Type.DATE):
        return value
    return exp.cast(value, exp.DataType.Type.DATE)


def _days_between(args: list[exp.Expr]) -> exp.Expr:
    """Whole days from args[0] to args[1], both taken as calendar dates (DATE vs TIMESTAMP safe)."""
    start, end = args
    return exp.DateDiff(this=_as_date(end), expression=_as_date(start), unit=exp.var("DAY"))


def _md5_prefix(key: exp.Expr) -> exp.Expr:
    """The first hex digits of MD5(text of key); sqlglot spells MD5-as-hex per engine."""
    text = exp.cast(key, exp.DataType.Type.TEXT)
    return exp.Substring(
        this=exp.MD5(this=text),
        start=exp.Literal.number(1),
        length=exp.Literal.number(HASH_HEX_DIGITS),
    )


def _hash_bucket_hex_cast(args: list[exp.Expr]) -> exp.Expr:
    """DuckDB and BigQuery read '0x...' strings as hexadecimal integers."""
    key, buckets = args
    hex_text = exp.DPipe(this=exp.Literal.string("0x"), expression=_md5_prefix(key), safe=True)
    value = exp.cast(hex_text, exp.DataType.Type.BIGINT)
    return exp.Mod(this=value, expression=exp.paren(buckets))


def _hash_bucket_postgres(args: list[exp.Expr]) -> exp.Expr:
    """PostgreSQL converts hex text through a bit string: ('x' || hex)::bit(32)::bigint."""
    key, buckets = args
    hex_text = exp.DPipe(this=exp.Literal.string("x"), expression=_md5_prefix(key), safe=True)
    bits = exp.cast(hex_text, exp.DataType.build(f"BIT({4 * HASH_HEX_DIGITS})", dialect="postgres"))
    value = exp.cast(bits, exp.DataType.Type.BIGINT)
    return exp.Mod(this=value, expression=exp.paren(buckets))


def _safe_divide(args: list[exp.Expr]) -> exp.Expr:
    """CASE WHEN b = 0 THEN NULL ELSE a / b END, in floating point on every engine (DuckDB's
    DECIMAL division gives a DOUBLE, PostgreSQL's a NUMERIC: one type everywhere)."""
    numerator, denominator = args
    double = exp.DataType.build("DOUBLE")
    division = exp.Div(
        this=exp.cast(numerator, double), expression=exp.cast(denominator.copy(), double)
    )
    zero = exp.EQ(this=exp.paren(denominator), expression=exp.Literal.number(0))
    return exp.Case(ifs=[exp.If(this=zero, true=exp.null())], default=division)


DEFAULT_LOWERINGS: dict[str, tuple[int, Lowering]] = {
    # name: (number of arguments, builder)
    "segsql_days_between": (2, _days_between),
    "segsql_hash_bucket": (2, _hash_bucket_hex_cast),
    "segsql_safe_divide": (2, _safe_divide),
}


# ---------------------------------------------------------------------------------------------
# node rewrites: sqlglot nodes (parsed with DuckDB meaning) whose translation needs fixing


def _extract(part: str, value: exp.Expr) -> exp.Expr:
    """EXTRACT(part FROM value) as a BIGINT (PostgreSQL's EXTRACT returns NUMERIC)."""
    return exp.cast(exp.Extract(this=exp.var(part), expression=value), exp.DataType.Type.BIGINT)


def _pg_day_of_week(node: exp.Expr) -> exp.Expr:
    return _extract("DOW", node.this)  # 0 = Sunday, as DuckDB's dayofweek()


def _pg_day_of_week_iso(node: exp.Expr) -> exp.Expr:
    return _extract("ISODOW", node.this)  # 1 = Monday


def _pg_iso_week(node: exp.Expr) -> exp.Expr:
    return _extract("WEEK", node.this)  # PostgreSQL's WEEK is the ISO week, as DuckDB's week()


def _bq_day_of_week(node: exp.Expr) -> exp.Expr:
    """BigQuery's DAYOFWEEK counts 1 = Sunday; DuckDB's dayofweek() 0 = Sunday."""
    day = exp.Extract(this=exp.var("DAYOFWEEK"), expression=node.this)
    return exp.paren(exp.Sub(this=day, expression=exp.Literal.number(1)))


def _bq_iso_week(node: exp.Expr) -> exp.Expr:
    return exp.Extract(this=exp.var("ISOWEEK"), expression=node.this)


def _bq_extract(node: exp.Expr) -> exp.Expr:
    """EXTRACT(DOW|ISODOW ...) does not exist in BigQuery: use the equivalent functions."""
    part = node.this.name.upper() if isinstance(node.this, exp.Var) else ""
    if part == "DOW":
        return _bq_day_of_week(exp.DayOfWeek(this=node.expression))
    if part == "ISODOW":
        return exp.DayOfWeekIso(this=node.expression)
    return node


def _literal_backslashes(node: exp.Expr) -> exp.Expr:
    """DuckDB's LIKE has no escape character; PostgreSQL's and BigQuery's treat a backslash as one.
    Doubling every backslash of the pattern makes it match itself there, as on DuckDB."""
    if isinstance(node.parent, exp.Escape):
        return node  # an explicit ESCAPE clause means what it says everywhere
    pattern = node.expression
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        if "\\" not in pattern.this:
            return node
        escaped: exp.Expr = exp.Literal.string(pattern.this.replace("\\", "\\\\"))
    else:
        backslash = exp.Literal.string("\\")
        escaped = exp.func("REPLACE", pattern.copy(), backslash, exp.Literal.string("\\\\"))
    changed = node.copy()
    changed.set("expression", escaped)
    return changed


@dataclass(frozen=True)
class Engine:
    """What segsql needs to know about one warehouse engine."""

    name: str
    sqlglot_dialect: str
    default_schema: str = "segments"
    lowerings: dict[str, tuple[int, Lowering]] = field(default_factory=dict)
    rewrites: dict[type[exp.Expr], Rewrite] = field(default_factory=dict)
    reads_files: bool = False  # CSV/Parquet paths usable as tables in place
    # PostgreSQL cannot CREATE OR REPLACE a table, nor replace a view whose columns changed:
    # such engines replace an object by DROP ... CASCADE then CREATE, inside the deploy's transaction.
    replaces_by_drop: bool = False
    # Words the engine refuses as bare names, which sqlglot's generator does not quote for it.
    reserved_words: frozenset[str] = frozenset()
    # No zone maps, and temporary tables are never analysed by the engine itself (PostgreSQL's
    # autovacuum skips them): a scratch table read by ranges of one column again and again (a
    # backfill's staged source rows, by day) needs an index on it and statistics.
    indexes_scratch: bool = False

    def lowering(self, name: str) -> tuple[int, Lowering] | None:
        return self.lowerings.get(name) or DEFAULT_LOWERINGS.get(name)


# PostgreSQL's reserved key words (its docs, appendix "SQL Key Words": "reserved", and "reserved
# (can be function or type)"): a segment named `order` or `user` must be written "order", "user".
# fmt: off
POSTGRES_RESERVED_WORDS = frozenset({
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization",
    "binary", "both", "case", "cast", "check", "collate", "collation", "column", "concurrently",
    "constraint", "create", "cross", "current_catalog", "current_date", "current_role",
    "current_schema", "current_time", "current_timestamp", "current_user", "default", "deferrable",
    "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign",
    "freeze", "from", "full", "grant", "group", "having", "ilike", "in", "initially", "inner",
    "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like", "limit",
    "localtime", "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only",
    "or", "order", "outer", "overlaps", "placing", "primary", "references", "returning", "right",
    "select", "session_user", "similar", "some", "symmetric", "system_user", "table",
    "tablesample", "then", "to", "trailing", "true", "union", "unique", "user", "using",
    "variadic", "verbose", "when", "where", "window", "with",
})
# fmt: on

ENGINES: dict[str, Engine] = {
    "duckdb": Engine("duckdb", "duckdb", reads_files=True),
    "postgres": Engine(
        "postgres",
        "postgres",
        lowerings={"segsql_hash_bucket": (2, _hash_bucket_postgres)},
        rewrites={
            exp.DayOfWeek: _pg_day_of_week,
            exp.DayOfWeekIso: _pg_day_of_week_iso,
            exp.WeekOfYear: _pg_iso_week,
            exp.Week: _pg_iso_week,
            exp.Like: _literal_backslashes,
            exp.ILike: _literal_backslashes,
        },
        replaces_by_drop=True,
        reserved_words=POSTGRES_RESERVED_WORDS,
        indexes_scratch=True,
    ),
    "bigquery": Engine(
        "bigquery",
        "bigquery",
        rewrites={
            exp.DayOfWeek: _bq_day_of_week,
            exp.Week: _bq_iso_week,
            exp.Extract: _bq_extract,
            exp.Like: _literal_backslashes,
            exp.ILike: _literal_backslashes,
        },
    ),
}

PORTABLE_FUNCTIONS = tuple(sorted(DEFAULT_LOWERINGS))


@functools.cache
def sqlglot_dialect(name: str) -> Dialect:
    """One sqlglot Dialect per name: given a name, sqlglot looks it up and builds a new Dialect
    on every parse and print (a tenth of a compile's time, thousands of calls)."""
    return Dialect.get_or_raise(name)


def portable_name(node: exp.Expr) -> str | None:
    """The segsql_* name of a portable function call, else None."""
    if isinstance(node, exp.Anonymous) and str(node.this).lower().startswith("segsql_"):
        return str(node.this).lower()
    return None


def needs_lowering(expression: exp.Expr, engine: Engine) -> bool:
    """Whether `lower_portable` would change anything in the tree for this engine."""
    return any(
        type(node) in engine.rewrites
        or ((name := portable_name(node)) is not None and engine.lowering(name) is not None)
        for node in expression.walk()
    )


def lower_portable(expression: exp.Expr, engine: Engine, copy: bool = True) -> exp.Expr:
    """Replace every `segsql_*` call with the engine's own form and apply the engine's node
    rewrites (bottom-up, so calls may nest). `copy=False` rewrites a tree the caller owns in place."""

    def lower(node: exp.Expr) -> exp.Expr:
        rewrite = engine.rewrites.get(type(node))
        if rewrite is not None:
            return rewrite(node)
        name = portable_name(node)
        if name is None:
            return node
        _arity, build = engine.lowering(name) or (0, None)
        if build is None:
            return node
        return build(list(node.expressions))

    return expression.transform(lower, copy=copy)
