{#- Business thresholds shared by value segments. Override per run with `--var name=value`. -#}

{% macro high_value_threshold() -%}
{{ var('high_value_threshold', 2500) }}
{%- endmacro %}

{% macro high_aov_threshold() -%}
{{ var('high_aov_threshold', 150) }}
{%- endmacro %}
