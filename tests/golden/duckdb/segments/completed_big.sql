-- segment: completed_big (segments/lifecycle.yml:5)
-- entity: customer | kind: value | parent: -
-- definition: 1eba1c5584eea1da | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    completed_revenue >= 310
  ) IS TRUE;
