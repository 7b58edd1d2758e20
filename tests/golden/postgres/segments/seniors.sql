-- segment: seniors (segments/lifecycle.yml:6)
-- entity: customer | kind: demographic | parent: -
-- definition: c3197aaae360326a | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    age >= 39
  ) IS TRUE;
