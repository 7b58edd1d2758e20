-- segment: active (segments/core.yml:6)
-- entity: customer | kind: behavioral | parent: all_customers
-- definition: 8a72494fddf936a6 | as_of: 2024-06-30 | target: pg (postgres)
-- description: Ordered in the last 90 days.
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE;
