{#- segsql standard library: dates. Arguments are SQL text; results are SQL text that parses in every
    dialect, using `segsql_*` portable functions where engines disagree (see segsql/dialects.py). -#}

{% macro days_since(expr) -%}
segsql_days_between({{ expr }}, DATE '{{ as_of }}')
{%- endmacro %}

{% macro in_window(time_col, window) -%}
(CAST({{ time_col }} AS DATE) > DATE '{{ window_start(window) }}' AND CAST({{ time_col }} AS DATE) <= DATE '{{ as_of }}')
{%- endmacro %}

{% macro age_from_birth_date(col) -%}
{#- whole years at as_of: compare yyyymmdd numbers, so leap days and month ends need no special case -#}
CAST(FLOOR(({{ as_of | replace('-', '') }} - (EXTRACT(YEAR FROM {{ col }}) * 10000 + EXTRACT(MONTH FROM {{ col }}) * 100 + EXTRACT(DAY FROM {{ col }}))) / 10000) AS INT)
{%- endmacro %}
