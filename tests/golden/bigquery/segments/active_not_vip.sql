-- segment: active_not_vip (segments/core.yml:24)
-- entity: customer | kind: - | parent: active
-- definition: d34845457bd8f91f | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
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
