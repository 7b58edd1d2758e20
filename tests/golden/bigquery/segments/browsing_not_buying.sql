-- segment: browsing_not_buying (segments/core.yml:44)
-- entity: customer | kind: needs | parent: lapsed
-- definition: ec3bb028506d62e0 | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  NOT (
    (
      days_since_last_order <= 30
    ) IS TRUE
  )
  AND (
    views_7d > 0
  ) IS TRUE;
