-- segment: active_high_value (segments/core.yml:13)
-- entity: customer | kind: value | parent: active
-- definition: 54f007041cd4585f | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE AND (
    lifetime_revenue >= 300
  ) IS TRUE;
