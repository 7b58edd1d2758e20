-- segment: lapsed (segments/core.yml:41)
-- entity: customer | kind: - | parent: all_customers
-- definition: de2fa79f47c8b62d | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  NOT (
    (
      days_since_last_order <= 30
    ) IS TRUE
  );
