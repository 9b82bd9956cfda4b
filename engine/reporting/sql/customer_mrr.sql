-- Each customer's MRR per currency, one row per UTC day it changed: the MRR before and
-- after, until the next change. Churn, reactivation and retention are judged here, per
-- customer, so a customer moving from one subscription to another is an expansion or
-- contraction, not a churn and a new one.
WITH deltas AS (
    SELECT customer, currency, from_day AS day, mrr AS delta
    FROM reporting.subscription_spans WHERE client_id = $client_id
    UNION ALL
    SELECT customer, currency, until_day, -mrr
    FROM reporting.subscription_spans WHERE client_id = $client_id AND until_day <= $today::DATE
),
customer_days AS (
    SELECT customer, currency, day, sum(delta) AS delta
    FROM deltas
    GROUP BY ALL
),
customer_after AS (
    SELECT
        *,
        sum(delta) OVER (PARTITION BY customer, currency ORDER BY day
                         ROWS UNBOUNDED PRECEDING) AS after
    FROM customer_days
)
SELECT
    $client_id AS client_id,
    customer,
    currency,
    day,
    lead(day) OVER (PARTITION BY customer, currency ORDER BY day) AS until_day,
    after - delta AS previous_mrr,
    after AS mrr,
    coalesce(sum(CASE WHEN after > 0 THEN 1 ELSE 0 END) OVER (
        PARTITION BY customer, currency ORDER BY day
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) > 0 AS paid_before,
    min(CASE WHEN after > 0 THEN day END) OVER (PARTITION BY customer, currency)
        AS first_paid_day
FROM customer_after
