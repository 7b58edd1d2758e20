{#- segsql standard library: lifecycle stages. -#}

{% macro lifecycle_stage(signup_col, first_order_col, last_order_col, new_window='30 days', active_window='90 days', at_risk_window='180 days') -%}
CASE
  WHEN CAST({{ signup_col }} AS DATE) > DATE '{{ window_start(new_window) }}' THEN 'new'
  WHEN {{ first_order_col }} IS NULL THEN 'prospect'
  WHEN CAST({{ last_order_col }} AS DATE) > DATE '{{ window_start(active_window) }}' THEN 'active'
  WHEN CAST({{ last_order_col }} AS DATE) > DATE '{{ window_start(at_risk_window) }}' THEN 'at_risk'
  ELSE 'churned'
END
{%- endmacro %}
