-- segment: active_not_vip (segments/core.yml:24)
-- entity: customer | kind: - | parent: active
-- definition: d34845457bd8f91f | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE
  AND NOT (
    (
      orders_90d > 0
    ) IS TRUE AND (
      lifetime_revenue >= 300
    ) IS TRUE
  );
