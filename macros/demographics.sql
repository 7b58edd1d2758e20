{#- Demographic helpers. -#}

{% macro age_band(age_col) -%}
CASE
  WHEN {{ age_col }} IS NULL THEN 'unknown'
  WHEN {{ age_col }} < 25 THEN '18-24'
  WHEN {{ age_col }} < 35 THEN '25-34'
  WHEN {{ age_col }} < 45 THEN '35-44'
  WHEN {{ age_col }} < 55 THEN '45-54'
  WHEN {{ age_col }} < 65 THEN '55-64'
  ELSE '65+'
END
{%- endmacro %}
