-- segment: busy_month (segments/lifecycle.yml:3)
-- entity: customer | kind: - | parent: -
-- definition: 468b0cc075595ecf | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    orders_30d >= 2
  ) IS TRUE;
