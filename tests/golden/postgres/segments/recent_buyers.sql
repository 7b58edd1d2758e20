-- segment: recent_buyers (segments/core.yml:38)
-- entity: customer | kind: - | parent: -
-- definition: 0235a6c08b34c531 | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    days_since_last_order <= 30
  ) IS TRUE;
