-- segment: vip_or_lapsed (segments/core.yml:48)
-- entity: customer | kind: - | parent: -
-- definition: 9366700821aa5702 | as_of: 2024-06-30 | target: local (duckdb)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    (
      (
        orders_90d > 0
      ) IS TRUE AND (
        lifetime_revenue >= 300
      ) IS TRUE
    )
    OR (
      NOT (
        (
          days_since_last_order <= 30
        ) IS TRUE
      )
    )
  );
