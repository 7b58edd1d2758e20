-- segment: active_high_value_na (segments/core.yml:18)
-- entity: customer | kind: geographic | parent: active_high_value
-- definition: ff1515c22462fc0c | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE
  AND (
    lifetime_revenue >= 300
  ) IS TRUE
  AND (
    country IN ('US', 'CA')
  ) IS TRUE
  AND (
    days_since_last_order < 10
  ) IS TRUE;
