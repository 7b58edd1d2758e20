-- segment: paid_plan (segments/core.yml:31)
-- entity: customer | kind: technographic | parent: -
-- definition: 9a8e66819ad2cff7 | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    plan <> 'free'
  ) IS TRUE;
