-- segment: active_not_on_free (segments/core.yml:50)
-- entity: customer | kind: - | parent: -
-- definition: 15db2c7092e4f207 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    (
      orders_90d > 0
    ) IS TRUE
  )
  AND (
    NOT (
      (
        plan = 'free'
      ) IS TRUE
    )
  );
