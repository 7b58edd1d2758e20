-- segment: never_ordered (segments/lifecycle.yml:2)
-- entity: customer | kind: - | parent: -
-- definition: 31c7479d3f6c4033 | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_lifetime = 0
  ) IS TRUE;
