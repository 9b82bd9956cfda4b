-- MRR per UTC day and currency, measured at the end of the day, with its movements:
-- subscriptions from reporting.subscription_spans, customers' movements from
-- reporting.customer_mrr (docs/metrics.md).
WITH counted AS (
    SELECT subscription_id, currency, from_day AS d_from,
           coalesce(until_day, $today::DATE + 1) AS d_to, mrr
    FROM reporting.subscription_spans WHERE client_id = $client_id
),
deltas AS (
    SELECT currency, d_from AS day, 1 AS subscriptions FROM counted
    UNION ALL
    SELECT currency, d_to, -1 FROM counted WHERE d_to <= $today::DATE
),
customer_steps AS (
    SELECT currency, day, previous_mrr AS before, mrr AS after,
           CASE WHEN paid_before THEN 1 ELSE 0 END AS earlier_paying_days
    FROM reporting.customer_mrr WHERE client_id = $client_id
),
movements AS (
    SELECT
        currency,
        day,
        sum(CASE WHEN before = 0 AND after > 0 AND earlier_paying_days = 0
                 THEN after ELSE 0 END) AS new_mrr,
        sum(CASE WHEN before > 0 AND after > before THEN after - before ELSE 0 END)
            AS expansion_mrr,
        sum(CASE WHEN before > 0 AND after > 0 AND after < before THEN after - before ELSE 0 END)
            AS contraction_mrr,
        sum(CASE WHEN before > 0 AND after = 0 THEN -before ELSE 0 END) AS churned_mrr,
        sum(CASE WHEN before = 0 AND after > 0 AND earlier_paying_days > 0
                 THEN after ELSE 0 END) AS reactivation_mrr,
        sum(CASE WHEN before = 0 AND after > 0 THEN 1
                 WHEN before > 0 AND after = 0 THEN -1 ELSE 0 END) AS paying_delta,
        count(*) FILTER (WHERE before = 0 AND after > 0 AND earlier_paying_days = 0)
            AS new_paying,
        count(*) FILTER (WHERE before = 0 AND after > 0 AND earlier_paying_days > 0)
            AS reactivated,
        count(*) FILTER (WHERE before > 0 AND after = 0) AS churned
    FROM customer_steps
    GROUP BY ALL
),
subscription_moves AS (
    SELECT currency, day, sum(subscriptions) AS active_delta
    FROM deltas
    GROUP BY ALL
),
lifetimes AS (
    SELECT subscription_id, currency, min(d_from) AS first_day, max(d_to) AS last_day
    FROM counted
    GROUP BY ALL
),
starts AS (
    SELECT currency, first_day AS day, count(*) AS new_subscriptions
    FROM lifetimes GROUP BY ALL
),
ends AS (
    SELECT currency, last_day AS day, count(*) AS churned_subscriptions
    FROM lifetimes WHERE last_day <= $today::DATE GROUP BY ALL
),
calendar AS (
    SELECT currency, unnest(generate_series(min(day), $today::DATE, INTERVAL 1 DAY))::DATE AS day
    FROM deltas
    GROUP BY currency
)
SELECT
    $client_id AS client_id,
    c.day,
    c.currency,
    sum(coalesce(m.new_mrr + m.expansion_mrr + m.contraction_mrr + m.churned_mrr
                 + m.reactivation_mrr, 0)) OVER w AS mrr,
    coalesce(m.new_mrr, 0) AS new_mrr,
    coalesce(m.expansion_mrr, 0) AS expansion_mrr,
    coalesce(m.contraction_mrr, 0) AS contraction_mrr,
    coalesce(m.churned_mrr, 0) AS churned_mrr,
    coalesce(m.reactivation_mrr, 0) AS reactivation_mrr,
    coalesce(m.new_mrr + m.expansion_mrr + m.contraction_mrr + m.churned_mrr
             + m.reactivation_mrr, 0) AS net_new_mrr,
    sum(coalesce(sm.active_delta, 0)) OVER w AS active_subscriptions,
    coalesce(st.new_subscriptions, 0) AS new_subscriptions,
    coalesce(en.churned_subscriptions, 0) AS churned_subscriptions,
    sum(coalesce(m.paying_delta, 0)) OVER w AS paying_customers,
    coalesce(m.new_paying, 0) AS new_customers,
    coalesce(m.reactivated, 0) AS reactivated_customers,
    coalesce(m.churned, 0) AS churned_customers
FROM calendar c
LEFT JOIN movements m USING (currency, day)
LEFT JOIN subscription_moves sm USING (currency, day)
LEFT JOIN starts st USING (currency, day)
LEFT JOIN ends en USING (currency, day)
WINDOW w AS (PARTITION BY c.currency ORDER BY c.day ROWS UNBOUNDED PRECEDING)
