-- segment: newcomers (segments/lifecycle.yml:9)
-- entity: customer | kind: lifecycle | parent: -
-- definition: 21b6d113c5f15dd0 | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    stage = 'new'
  ) IS TRUE;
