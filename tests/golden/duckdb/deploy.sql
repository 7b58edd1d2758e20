-- segsql deploy script for project mini, target local (duckdb), as_of 2024-06-30
CREATE SCHEMA IF NOT EXISTS segments;

CREATE OR REPLACE TABLE segments.customer_features AS
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
    DATE_DIFF('DAY', CAST(MAX(ordered_at) AS DATE), CAST('2024-06-30' AS DATE)) AS days_since_last_order,
    COUNT(*) FILTER(WHERE
      (
        CAST(ordered_at AS DATE) > CAST('2024-05-31' AS DATE)
        AND CAST(ordered_at AS DATE) <= CAST('2024-06-30' AS DATE)
      )) AS orders_30d
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
    ) AS INT) AS age,
    CAST(lifetime_revenue AS DOUBLE) / NULLIF(orders_lifetime, 0) AS avg_order_value,
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
        6 - NTILE(5) OVER (ORDER BY days_since_last_order, customer_id)
      ) * 100 + NTILE(5) OVER (ORDER BY orders_lifetime, customer_id) * 10 + NTILE(5) OVER (ORDER BY lifetime_revenue, customer_id)
    ) AS rfm,
    ROW_NUMBER() OVER (ORDER BY orders_90d DESC, customer_id) AS recency_rank,
    NTILE(5) OVER (ORDER BY lifetime_revenue, customer_id) AS revenue_quintile
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

CREATE OR REPLACE VIEW segments.all_customers AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  TRUE;

CREATE OR REPLACE VIEW segments.active AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.active_high_value AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE AND (
    lifetime_revenue >= 300
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.active_high_value_na AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE
  AND (
    lifetime_revenue >= 300
  ) IS TRUE
  AND (
    country IN ('US', 'CA')
  ) IS TRUE
  AND (
    days_since_last_order < 10
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.free_plan AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    plan = 'free'
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.not_free_plan AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  NOT (
    (
      plan = 'free'
    ) IS TRUE
  );

CREATE OR REPLACE VIEW segments.active_not_on_free AS
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

CREATE OR REPLACE VIEW segments.active_not_vip AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d > 0
  ) IS TRUE
  AND NOT (
    (
      orders_90d > 0
    ) IS TRUE AND (
      lifetime_revenue >= 300
    ) IS TRUE
  );

CREATE OR REPLACE VIEW segments.at_risk AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    stage = 'at_risk'
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.bottom_quintile AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    revenue_quintile = 1
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.recent_buyers AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    days_since_last_order <= 30
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.lapsed AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  NOT (
    (
      days_since_last_order <= 30
    ) IS TRUE
  );

CREATE OR REPLACE VIEW segments.browsing_not_buying AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  NOT (
    (
      days_since_last_order <= 30
    ) IS TRUE
  )
  AND (
    views_7d > 0
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.busy_month AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_30d >= 2
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.champions AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    champion
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.completed_big AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    completed_revenue >= 310
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.high_aov AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    avg_order_value >= 200
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.never_ordered AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_lifetime = 0
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.newcomers AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    stage = 'new'
  ) IS TRUE;

CREATE OR REPLACE VIEW segments."order" AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    orders_90d >= 2
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.paid_plan AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    plan <> 'free'
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.prospects AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    stage = 'prospect'
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.rfm_400_plus AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    rfm >= 400
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.seniors AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    age >= 39
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.top_5_recent AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    recency_rank <= 5
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.under_25 AS
SELECT DISTINCT
  customer_id
FROM segments.customer_features
WHERE
  (
    age < 25
  ) IS TRUE;

CREATE OR REPLACE VIEW segments.vip_or_lapsed AS
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
