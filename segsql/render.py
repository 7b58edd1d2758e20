"""Stage 3, render: Jinja -> SQL text, in a sandbox.

Expressions see the macros of the standard library (`segsql/stdlib/*.sql`) and of the project
(`macros/*.sql`, which override the standard library by name), `as_of` (ISO date), `var(name)` and
`window_start('90 days')`. The environment is sandboxed (no attribute access to internals such as
`''.__class__`) and strict (an unknown name is an error, never an empty string).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from segsql.errors import ErrorCollector, Location, SpecError, did_you_mean
from segsql.load import WINDOW_PATTERN
from segsql.model import Expr, Window
from segsql.yamlio import read_source

_MISSING = object()
_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)  # a `{{ ... }}` block (the first `}}` ends it)


@dataclass(frozen=True)
class Rendered:
    text: str
    macros: tuple[str, ...]  # macros the expression called, for lineage


class Renderer:
    """Renders user expressions with the project's macros; one per (project, as_of, vars)."""

    def __init__(self, macro_files: Sequence[Path], variables: dict[str, Any], as_of: dt.date):
        self.as_of = as_of
        self.variables = variables
        self.env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        self.env.globals.update(
            as_of=as_of.isoformat(), var=self._var, window_start=self._window_start
        )
        self.macro_origin: dict[str, str] = {}
        for name, text in _stdlib_sources():
            self._load_macros(text, f"stdlib/{name}", None)
        # every broken macro file at once, reported like other spec errors ("nothing was written")
        errors = ErrorCollector()
        for path in macro_files:
            try:
                self._load_macros(read_source(path), str(path), path)
            except SpecError as exc:
                errors.extend([exc])
        errors.raise_if_any()
        self._cache: dict[str, Rendered] = {}
        self._blocks: dict[str, tuple[jinja2.Template, set[str]]] = {}  # see _render_blocks

    @property
    def macro_names(self) -> list[str]:
        return sorted(self.macro_origin)

    def render(self, expr: Expr) -> Rendered:
        """The expression's SQL text after Jinja; plain SQL (no '{') is returned untouched."""
        if "{" not in expr.text:
            return Rendered(expr.text, ())
        cached = self._cache.get(expr.text)
        if cached is None:
            cached = self._render_template(expr)
            self._cache[expr.text] = cached
        return cached

    def _render_template(self, expr: Expr) -> Rendered:
        fast = self._render_blocks(expr.text)
        if fast is not None:
            return fast
        try:
            template, names = self._compile(expr.text)
            text = template.render()
        except jinja2.TemplateSyntaxError as exc:
            raise SpecError(
                f"Jinja syntax error: {exc.message}", _line_of(expr.loc, exc.lineno)
            ) from None
        except SecurityError as exc:
            raise SpecError(
                f"unsafe template: {exc}",
                expr.loc,
                "templates may only call macros, var() and use as_of",
            ) from None
        except jinja2.UndefinedError as exc:
            raise self._undefined(exc, expr.loc) from None
        except SpecError as exc:
            raise SpecError(exc.message, expr.loc, exc.hint) from None
        except Exception as exc:  # a macro called with wrong arguments, a filter that failed...
            raise SpecError(
                f"Jinja error: {exc}", expr.loc, "check the macro's arguments"
            ) from None
        return self._rendered(text, names)

    def _render_blocks(self, text: str) -> Rendered | None:
        """Text made only of literal SQL and `{{ ... }}` blocks, rendered block by block.

        Most expressions differ only in their literal SQL around the same few macro calls
        (`{{ days_since('last_order_at') }} <= 30`), and compiling a Jinja template costs a
        millisecond: a compile of 1,000 segments spent a tenth of its time there. Rendering each
        block as its own template (compiled once per distinct block) and keeping the literal
        text as it is gives the same output, since a template's output is its literal text and
        its blocks' values, in order. Anything else (a `{%` tag, a comment, whitespace control,
        a stray brace) or any error returns None: the whole template is rendered as usual,
        so errors keep their line and message.
        """
        if "{%" in text or "{#" in text:
            return None
        parts = _BLOCK.split(text)
        literals, blocks = parts[0::2], parts[1::2]
        if any("{" in part or "}" in part for part in literals):
            return None
        if any(block.startswith(("-", "+")) or block.endswith(("-", "+")) for block in blocks):
            return None
        output: list[str] = []
        names: set[str] = set()
        try:
            for literal, block in zip(literals, [*blocks, None], strict=True):
                output.append(literal)
                if block is not None:
                    template, block_names = self._block(block)
                    output.append(template.render())
                    names |= block_names
        except Exception:
            return None
        return self._rendered("".join(output), names)

    def _rendered(self, text: str, names: set[str]) -> Rendered:
        """The rendered text, whitespace collapsed, and the macros among the names it used."""
        macros = tuple(sorted(n for n in names if n in self.macro_origin))
        return Rendered(" ".join(text.split()), macros)

    def _block(self, block: str) -> tuple[jinja2.Template, set[str]]:
        found = self._blocks.get(block)
        if found is None:
            found = self._blocks[block] = self._compile("{{" + block + "}}")
        return found

    def _compile(self, source: str) -> tuple[jinja2.Template, set[str]]:
        """The template and the names it uses, parsed once (what `from_string` does, with the
        parse tree kept for the names)."""
        tree = self.env.parse(source)
        names = {n.name for n in tree.find_all(nodes.Name)}
        code = self.env.compile(tree)
        return self.env.template_class.from_code(self.env, code, self.env.make_globals(None)), names

    def _undefined(self, exc: jinja2.UndefinedError, loc: Location) -> SpecError:
        message = str(exc.message or exc)
        name = message.split("'")[1] if message.count("'") >= 2 else ""
        if "unsafe" in message:
            return SpecError(
                f"unsafe template: {message}",
                loc,
                "templates may only call macros, var() and use as_of",
            )
        if message.startswith("parameter ") and message.endswith("was not provided"):
            # Jinja reports a macro called with too few arguments as an undefined name
            return SpecError(
                f"macro called without a required argument: {message}",
                loc,
                "pass every argument the macro declares (see docs/stdlib.md or macros/*.sql)",
            )
        known = [*self.macro_origin, "as_of", "var", "window_start"]
        hint = (
            did_you_mean(name, known)
            or "define it as a macro in macros/*.sql, or pass it with var()"
        )
        return SpecError(f"unknown macro or variable: {message}", loc, hint)

    def _load_macros(self, text: str, origin: str, path: Path | None) -> None:
        try:
            module = self.env.from_string(text).module
        except jinja2.TemplateSyntaxError as exc:
            loc = Location(path, exc.lineno or 0, 1) if path else None
            raise SpecError(f"Jinja syntax error in macro file: {exc.message}", loc) from None
        for name, macro in vars(module).items():
            if not name.startswith("_") and isinstance(macro, jinja2.runtime.Macro):
                # Globals are shared, so a macro may call a macro of another file.
                self.env.globals[name] = macro
                self.macro_origin[name] = origin

    def _var(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.variables:
            return self.variables[name]
        if default is not _MISSING:
            return default
        hint = (
            did_you_mean(name, self.variables)
            or "set it under `vars:` in segsql.yml or pass --var name=value"
        )
        raise SpecError(f"var('{name}') is not set", hint=hint)

    def _window_start(self, window: str) -> str:
        match = WINDOW_PATTERN.match(window)
        if not match:
            raise SpecError(
                f"invalid window '{window}'",
                hint="write `N days`, `N weeks`, `N months` or `N years`",
            )
        return Window(int(match.group(1)), match.group(2).lower()).start(self.as_of).isoformat()  # type: ignore[arg-type]


# The renderers of the last builds, by what they render with (see `renderer_for`).
_RECENT: list[tuple[tuple[str, ...], Renderer]] = []
_RECENT_KEPT = 2


def renderer_for(
    macro_files: Sequence[Path], variables: dict[str, Any], as_of: dt.date
) -> Renderer:
    """A Renderer for these macros, variables and as_of: the last one made for the same, if
    any. Jinja compiles every macro file when a Renderer is made (20 ms on the example
    project), a compile makes two (segments, KPIs), and `segsql compile --watch` compiles
    again after every edit; rendering is a function of the inputs in the key alone."""
    try:
        texts = tuple(f"{path}\0{read_source(path)}" for path in macro_files)
    except SpecError:
        return Renderer(macro_files, variables, as_of)  # which reports it with the others
    key = (*texts, repr(sorted(variables.items())), as_of.isoformat())
    for known, renderer in _RECENT:
        if known == key:
            return renderer
    renderer = Renderer(macro_files, variables, as_of)
    _RECENT.insert(0, (key, renderer))
    del _RECENT[_RECENT_KEPT:]
    return renderer


def _stdlib_sources() -> list[tuple[str, str]]:
    folder = resources.files("segsql") / "stdlib"
    return sorted(
        (f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql")
    )


def _line_of(loc: Location, lineno: int | None) -> Location:
    return loc.shifted(max(0, (lineno or 1) - 1), 1) if lineno and lineno > 1 else loc
