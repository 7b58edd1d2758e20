{#- Region membership tests over an ISO 3166-1 alpha-2 country column (SQL text in, SQL text out). -#}

{% macro is_eu(country_col) -%}
{{ country_col }} IN ('DE', 'FR', 'ES', 'IT', 'NL', 'SE', 'PL')
{%- endmacro %}

{% macro is_north_america(country_col) -%}
{{ country_col }} IN ('US', 'CA')
{%- endmacro %}

{% macro is_latam(country_col) -%}
{{ country_col }} IN ('BR', 'MX')
{%- endmacro %}

{% macro is_apac(country_col) -%}
{{ country_col }} IN ('JP', 'AU', 'IN')
{%- endmacro %}
