"""Rendering: the Jinja sandbox, strict names, macros (stdlib and project), var() and windows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from segsql.errors import Location, SpecError, SpecErrors
from segsql.model import Expr
from segsql.render import Renderer

AS_OF = dt.date(2024, 6, 30)
HERE = Location(Path("segments/x.yml"), 4, 12)


def render(text: str, macro_files: tuple[Path, ...] = (), **variables: object) -> str:
    renderer = Renderer(macro_files, {"as_of": AS_OF.isoformat(), **variables}, AS_OF)
    return renderer.render(Expr(text, HERE)).text


def render_error(text: str, **variables: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        render(text, **variables)
    assert caught.value.location == HERE  # errors point at the expression
    return caught.value


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ lipsum.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ var.__self__ }}",
        "{{ days_since._func.__globals__ }}",
        "{{ (1).__class__.__base__ }}",
    ],
)
def test_sandbox_refuses_internals(template: str) -> None:
    error = render_error(template)
    assert error.message.startswith("unsafe template")
    assert error.hint == "templates may only call macros, var() and use as_of"


@pytest.mark.parametrize(
    "template",
    [
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
        "{{ ''|attr('__class__') }}",
    ],
)
def test_sandbox_refuses_indirect_access(template: str) -> None:
    assert "unsafe" in render_error(template).message


def test_unknown_names_are_errors_with_a_suggestion() -> None:
    error = render_error("{{ days_sinc('x') }}")
    assert error.message == "unknown macro or variable: 'days_sinc' is undefined"
    assert error.hint == "did you mean 'days_since'?"
    assert "undefined" in render_error("{{ nothing_like_it }}").message


def test_plain_sql_is_untouched() -> None:
    assert render("a   >   1") == "a   >   1"


def test_as_of_var_and_window_start() -> None:
    assert render("'{{ as_of }}'") == "'2024-06-30'"
    assert render("x >= {{ var('threshold') }}", threshold=300) == "x >= 300"
    assert render("x >= {{ var('missing', 5) }}") == "x >= 5"
    # 90 days before 2024-06-30 is 2024-04-01 (the excluded bound); months clamp to month ends
    assert render("{{ window_start('90 days') }}") == "2024-04-01"
    assert render("{{ window_start('4 months') }}") == "2024-02-29"
    assert render("{{ window_start('1 year') }}") == "2023-06-30"


def test_missing_var_names_the_closest() -> None:
    error = render_error("{{ var('treshold') }}", threshold=1)
    assert error.message == "var('treshold') is not set"
    assert error.hint == "did you mean 'threshold'?"


def test_stdlib_macros_expand() -> None:
    assert render("{{ days_since('max(ordered_at)') }}") == (
        "segsql_days_between(max(ordered_at), DATE '2024-06-30')"
    )
    assert render("{{ in_window('t', '30 days') }}") == (
        "(CAST(t AS DATE) > DATE '2024-05-31' AND CAST(t AS DATE) <= DATE '2024-06-30')"
    )


def test_project_macro_overrides_the_stdlib(tmp_path: Path) -> None:
    macros = tmp_path / "macros.sql"
    macros.write_text(
        "{% macro days_since(col) %}my_days({{ col }}){% endmacro %}\n"
        "{% macro doubled(col) %}2 * {{ days_since(col) }}{% endmacro %}\n"
    )
    assert render("{{ days_since('x') }}", (macros,)) == "my_days(x)"
    assert render("{{ doubled('x') }}", (macros,)) == "2 * my_days(x)"  # macros call each other
    assert render("{{ safe_divide('a', 'b') }}", (macros,)).startswith(
        "CAST(a AS"
    )  # the rest stays


def test_macro_errors_are_spec_errors(tmp_path: Path) -> None:
    error = render_error("{{ days_since() }}")
    assert error.message.startswith("macro called without a required argument")
    assert "'expr' was not provided" in error.message
    broken = tmp_path / "broken.sql"
    broken.write_text("{% macro oops(x) %}\n{{ x \n{% endmacro %}\n")
    also_broken = tmp_path / "also_broken.sql"
    also_broken.write_text("{% macro m( %}\n")
    with pytest.raises(SpecErrors) as caught:  # every broken macro file at once
        render("1", (broken, also_broken))
    first, second = caught.value.errors
    assert first.message.startswith("Jinja syntax error in macro file")
    assert first.location is not None and second.location is not None
    assert {first.location.path, second.location.path} == {broken, also_broken}


def test_jinja_syntax_error_in_an_expression() -> None:
    assert render_error("{{ var('x' }}").message.startswith("Jinja syntax error")


@pytest.mark.parametrize(
    "text",
    [
        "{{ days_since('last_order_at') }} <= 30",
        "{{ days_since('last_order_at') }} <= 30 AND {{ days_since('signup_at') }} > {{ var('n') }}",
        "country IN {{ var('countries') }}\n  AND {{ in_window('ordered_at', '90 days') }}",
        "{{ as_of }} > signup_at",
        "plan = '{{ var('plan') }}'",
        # not rendered block by block: a tag, whitespace control, a brace in the SQL
        "{% if var('n') > 1 %}a > 1{% else %}a > 2{% endif %}",
        "{{- var('n') -}} < a",
        "a = '}' AND {{ var('n') }} > 1",
        "{{ '}}' }} = a",
    ],
)
def test_rendering_block_by_block_equals_rendering_the_template(text: str) -> None:
    """Renderer._render_blocks (a compile's fast path) gives what Jinja gives for the whole."""
    variables = {"as_of": AS_OF.isoformat(), "n": 2, "countries": "('DE', 'FR')", "plan": "pro"}
    renderer = Renderer((), variables, AS_OF)
    whole = " ".join(renderer.env.from_string(text).render().split())
    assert renderer.render(Expr(text, HERE)).text == whole
    fast = renderer._render_blocks(text)
    if fast is not None:  # None: the template is rendered whole
        assert fast.text == whole
    assert (fast is None) == any(s in text for s in ("{%", "{{-", "'}'", "'}}'"))


def test_errors_in_blocks_keep_their_line() -> None:
    renderer = Renderer((), {"as_of": AS_OF.isoformat()}, AS_OF)
    with pytest.raises(SpecError) as caught:
        renderer.render(Expr("a > 1\n  AND {{ days_sinse('x') }} > 2", HERE))
    assert "days_since" in (caught.value.hint or "")  # the usual error, with its suggestion


def test_a_renderer_is_shared_while_macros_variables_and_as_of_are_the_same(
    tmp_path: Path,
) -> None:
    from segsql.render import renderer_for

    macros = tmp_path / "m.sql"
    macros.write_text("{% macro twice(x) %}2 * {{ x }}{% endmacro %}", encoding="utf-8")
    variables = {"as_of": AS_OF.isoformat(), "n": 3}
    first = renderer_for([macros], variables, AS_OF)
    assert renderer_for([macros], dict(variables), AS_OF) is first
    assert renderer_for([macros], {**variables, "n": 4}, AS_OF) is not first
    assert renderer_for([macros], variables, dt.date(2024, 1, 31)) is not first
    macros.write_text("{% macro twice(x) %}({{ x }}) * 2{% endmacro %}", encoding="utf-8")
    edited = renderer_for([macros], variables, AS_OF)
    assert edited is not first
    assert edited.render(Expr("{{ twice('a') }}", Location(macros, 1, 1))).text == "(a) * 2"
