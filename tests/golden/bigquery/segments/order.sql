-- segment: order (segments/lifecycle.yml:16)
-- entity: customer | kind: - | parent: -
-- definition: be3baf80c8dcf051 | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    orders_90d >= 2
  ) IS TRUE;
