-- segment: bottom_quintile (segments/lifecycle.yml:12)
-- entity: customer | kind: value | parent: -
-- definition: 4923d103cdd829db | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    revenue_quintile = 1
  ) IS TRUE;
