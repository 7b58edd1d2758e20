-- feature relation of entity: customer (segments/customers.yml:10) - one row per customer_id
-- as_of: 2024-06-30 | target: bq (bigquery)
WITH entity_rows AS (
  SELECT
    customer_id,
    country,
    plan,
    birth_date,
    signup_at
  FROM customers
  WHERE
    CAST(signup_at AS DATE) <= CAST('2024-06-30' AS DATE)
), agg_1_orders AS (
  SELECT
    customer_id AS segsql_key,
    COUNT(*) AS orders_90d
  FROM orders
  WHERE
    CAST(ordered_at AS DATE) <= CAST('2024-06-30' AS DATE)
    AND CAST(ordered_at AS DATE) > CAST('2024-04-01' AS DATE)
  GROUP BY
    customer_id
), agg_2_orders AS (
  SELECT
    customer_id AS segsql_key,
    COUNT(*) AS orders_lifetime,
    SUM(amount) AS lifetime_revenue,
    MIN(ordered_at) AS first_order_at,
    MAX(ordered_at) AS last_order_at,
    DATE_DIFF(CAST('2024-06-30' AS DATE), CAST(MAX(ordered_at) AS DATE), DAY) AS days_since_last_order,
    COUNTIF(
      (
        CAST(ordered_at AS DATE) > CAST('2024-05-31' AS DATE)
        AND CAST(ordered_at AS DATE) <= CAST('2024-06-30' AS DATE)
      )
    ) AS orders_30d
  FROM orders
  WHERE
    CAST(ordered_at AS DATE) <= CAST('2024-06-30' AS DATE)
  GROUP BY
    customer_id
), agg_3_orders AS (
  SELECT
    customer_id AS segsql_key,
    SUM(amount) AS completed_revenue
  FROM orders
  WHERE
    CAST(ordered_at AS DATE) <= CAST('2024-06-30' AS DATE)
    AND (
      status = 'completed'
    )
  GROUP BY
    customer_id
), agg_4_events AS (
  SELECT
    customer_id AS segsql_key,
    COUNT(*) AS views_7d
  FROM events
  WHERE
    (
      CAST(event_date AS DATE) <= CAST('2024-06-30' AS DATE)
      AND CAST(event_date AS DATE) > CAST('2024-06-23' AS DATE)
    )
    AND (
      event_type = 'page_view'
    )
  GROUP BY
    customer_id
), source_features AS (
  SELECT
    e.customer_id,
    e.country,
    e.plan,
    e.birth_date,
    e.signup_at,
    COALESCE(agg_1_orders.orders_90d, 0) AS orders_90d,
    COALESCE(agg_2_orders.orders_lifetime, 0) AS orders_lifetime,
    COALESCE(agg_2_orders.lifetime_revenue, 0) AS lifetime_revenue,
    agg_2_orders.first_order_at AS first_order_at,
    agg_2_orders.last_order_at AS last_order_at,
    agg_2_orders.days_since_last_order AS days_since_last_order,
    COALESCE(agg_2_orders.orders_30d, 0) AS orders_30d,
    COALESCE(agg_3_orders.completed_revenue, 0) AS completed_revenue,
    COALESCE(agg_4_events.views_7d, 0) AS views_7d
  FROM entity_rows AS e
  LEFT JOIN agg_1_orders
    ON agg_1_orders.segsql_key = e.customer_id
  LEFT JOIN agg_2_orders
    ON agg_2_orders.segsql_key = e.customer_id
  LEFT JOIN agg_3_orders
    ON agg_3_orders.segsql_key = e.customer_id
  LEFT JOIN agg_4_events
    ON agg_4_events.segsql_key = e.customer_id
), derived_1 AS (
  SELECT
    customer_id,
    country,
    plan,
    birth_date,
    signup_at,
    orders_90d,
    orders_lifetime,
    lifetime_revenue,
    completed_revenue,
    first_order_at,
    last_order_at,
    days_since_last_order,
    orders_30d,
    views_7d,
    CAST(FLOOR(
      (
        20240630 - (
          EXTRACT(YEAR FROM birth_date) * 10000 + EXTRACT(MONTH FROM birth_date) * 100 + EXTRACT(DAY FROM birth_date)
        )
      ) / 10000
    ) AS INT64) AS age,
    CAST(lifetime_revenue AS FLOAT64) / NULLIF(orders_lifetime, 0) AS avg_order_value,
    CASE
      WHEN CAST(signup_at AS DATE) > CAST('2024-05-31' AS DATE)
      THEN 'new'
      WHEN first_order_at IS NULL
      THEN 'prospect'
      WHEN CAST(last_order_at AS DATE) > CAST('2024-04-01' AS DATE)
      THEN 'active'
      WHEN CAST(last_order_at AS DATE) > CAST('2024-01-02' AS DATE)
      THEN 'at_risk'
      ELSE 'churned'
    END AS stage,
    (
      (
        6 - NTILE(5) OVER (ORDER BY days_since_last_order NULLS LAST, customer_id NULLS LAST)
      ) * 100 + NTILE(5) OVER (ORDER BY orders_lifetime NULLS LAST, customer_id NULLS LAST) * 10 + NTILE(5) OVER (ORDER BY lifetime_revenue NULLS LAST, customer_id NULLS LAST)
    ) AS rfm,
    ROW_NUMBER() OVER (ORDER BY orders_90d DESC, customer_id NULLS LAST) AS recency_rank,
    NTILE(5) OVER (ORDER BY lifetime_revenue NULLS LAST, customer_id NULLS LAST) AS revenue_quintile
  FROM source_features
), derived_2 AS (
  SELECT
    customer_id,
    country,
    plan,
    birth_date,
    signup_at,
    orders_90d,
    orders_lifetime,
    lifetime_revenue,
    completed_revenue,
    first_order_at,
    last_order_at,
    days_since_last_order,
    orders_30d,
    views_7d,
    age,
    avg_order_value,
    stage,
    rfm,
    recency_rank,
    revenue_quintile,
    rfm >= 500 AND stage = 'active' AS champion
  FROM derived_1
)
SELECT
  customer_id,
  country,
  plan,
  birth_date,
  signup_at,
  orders_90d,
  orders_lifetime,
  lifetime_revenue,
  completed_revenue,
  first_order_at,
  last_order_at,
  days_since_last_order,
  orders_30d,
  views_7d,
  age,
  avg_order_value,
  stage,
  rfm,
  recency_rank,
  revenue_quintile,
  champion
FROM derived_2;
