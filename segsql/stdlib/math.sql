{#- segsql standard library: arithmetic and scores. -#}

{% macro safe_divide(numerator, denominator) -%}
CAST({{ numerator }} AS DOUBLE PRECISION) / NULLIF({{ denominator }}, 0)
{%- endmacro %}

{% macro ntile_of(expr, buckets=5) -%}
NTILE({{ buckets }}) OVER (ORDER BY {{ expr }})
{%- endmacro %}

{% macro quintile(expr) -%}
{{ ntile_of(expr, 5) }}
{%- endmacro %}

{% macro decile(expr) -%}
{{ ntile_of(expr, 10) }}
{%- endmacro %}

{% macro rfm_score(recency_days, frequency, monetary) -%}
{#- 111..555; recent = 5 (fewest days since the last order), frequent = 5, high spend = 5.
    Entities that never ordered (NULL recency) rank as least recent. -#}
((6 - NTILE(5) OVER (ORDER BY {{ recency_days }})) * 100 + NTILE(5) OVER (ORDER BY {{ frequency }}) * 10 + NTILE(5) OVER (ORDER BY {{ monetary }}))
{%- endmacro %}
