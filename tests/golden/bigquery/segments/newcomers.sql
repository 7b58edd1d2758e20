-- segment: newcomers (segments/lifecycle.yml:9)
-- entity: customer | kind: lifecycle | parent: -
-- definition: 21b6d113c5f15dd0 | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    stage = 'new'
  ) IS TRUE;
