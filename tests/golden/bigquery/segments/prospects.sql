-- segment: prospects (segments/lifecycle.yml:10)
-- entity: customer | kind: lifecycle | parent: -
-- definition: 854830170ab4834d | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    stage = 'prospect'
  ) IS TRUE;
