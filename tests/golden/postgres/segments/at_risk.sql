-- segment: at_risk (segments/lifecycle.yml:8)
-- entity: customer | kind: lifecycle | parent: -
-- definition: daa744276993ab01 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    stage = 'at_risk'
  ) IS TRUE;
