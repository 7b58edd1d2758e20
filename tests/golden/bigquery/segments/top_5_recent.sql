-- segment: top_5_recent (segments/lifecycle.yml:11)
-- entity: customer | kind: - | parent: -
-- definition: 462d73d706a29939 | as_of: 2024-06-30 | target: bq (bigquery)
SELECT DISTINCT
  customer_id
FROM `acme-prod`.segments.customer_features
WHERE
  (
    recency_rank <= 5
  ) IS TRUE;
