-- segment: all_customers (segments/core.yml:2)
-- entity: customer | kind: lifecycle | parent: -
-- definition: 9a92cd0b51f573b2 | as_of: 2024-06-30 | target: pg (postgres)
-- description: Every customer who had signed up by as_of.
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  TRUE;
