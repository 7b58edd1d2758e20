-- segment: champions (segments/lifecycle.yml:14)
-- entity: customer | kind: value | parent: -
-- definition: b9469d5c3f43f83f | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    champion
  ) IS TRUE;
