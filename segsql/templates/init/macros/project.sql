{% macro big_spender_threshold() -%}
100
{%- endmacro %}

{% macro is_europe(column) -%}
{{ column }} IN ('DE', 'FR', 'GB', 'ES', 'IT', 'NL')
{%- endmacro %}
