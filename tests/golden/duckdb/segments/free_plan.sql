-- segment: free_plan (segments/core.yml:27)
-- entity: customer | kind: technographic | parent: -
-- definition: 3d0bc2e8ac73d4bd | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    plan = 'free'
  ) IS TRUE;
