-- segment: rfm_400_plus (segments/lifecycle.yml:13)
-- entity: customer | kind: value | parent: -
-- definition: fbc21129300be97f | as_of: 2024-06-30 | target: pg (postgres)
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    rfm >= 400
  ) IS TRUE;
