-- segment: under_25 (segments/lifecycle.yml:7)
-- entity: customer | kind: demographic | parent: -
-- definition: 70410636c75de507 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    age < 25
  ) IS TRUE;
