-- segment: not_free_plan (segments/core.yml:35)
-- entity: customer | kind: - | parent: all_customers
-- definition: 858517dec3dc5196 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  NOT (
    (
      plan = 'free'
    ) IS TRUE
  );
