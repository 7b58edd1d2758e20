-- segment: high_aov (segments/lifecycle.yml:4)
-- entity: customer | kind: - | parent: -
-- definition: aa9cb6d9dcb85d84 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    avg_order_value >= 200
  ) IS TRUE;
