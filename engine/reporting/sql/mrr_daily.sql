-- MRR per UTC day and currency, measured at the end of the day, with its movements.
--
-- A subscription counts from its counted_from day until its counted_until day (exclusive),
-- for the MRR its history recorded: each recorded value holds from the day it was first
-- seen until the next one; the first recorded value also holds back to counted_from.
-- Days recorded as unpaid or paused do not count.
--
-- Movements are judged per customer and currency, so a customer moving from one
-- subscription to another is an expansion or contraction, not a churn and a new one.
WITH subs AS (
    SELECT
        subscription_id,
        coalesce(customer, 'subscription:' || subscription_id) AS customer,
        currency,
        reporting.utc_day(counted_from) AS from_day,
        coalesce(reporting.utc_day(counted_until), $today::DATE + 1) AS until_day
    FROM reporting.subscription_mrr
    WHERE client_id = $client_id AND counted_from IS NOT NULL AND currency IS NOT NULL
),
recorded AS (
    SELECT
        subscription_id, day, mrr, status,
        lead(day) OVER (PARTITION BY subscription_id ORDER BY day) AS next_day,
        row_number() OVER (PARTITION BY subscription_id ORDER BY day) AS n
    FROM reporting.subscription_mrr_history
    WHERE client_id = $client_id AND day <= $today
),
spans AS (
    SELECT
        s.subscription_id, s.customer, s.currency,
        CASE WHEN r.n = 1 THEN s.from_day ELSE greatest(r.day, s.from_day) END AS d_from,
        least(coalesce(r.next_day, $today::DATE + 1), s.until_day, $today::DATE + 1) AS d_to,
        r.mrr
    FROM subs s
    JOIN recorded r USING (subscription_id)
    WHERE r.status NOT IN ('unpaid', 'paused', 'incomplete', 'incomplete_expired')
),
counted AS (
    SELECT * FROM spans WHERE d_from < d_to
),
deltas AS (
    SELECT customer, currency, d_from AS day, mrr AS delta, 1 AS subscriptions FROM counted
    UNION ALL
    SELECT customer, currency, d_to, -mrr, -1 FROM counted WHERE d_to <= $today::DATE
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
),
customer_steps AS (
    SELECT
        *,
        after - delta AS before,
        coalesce(sum(CASE WHEN after > 0 THEN 1 ELSE 0 END) OVER (
            PARTITION BY customer, currency ORDER BY day
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS earlier_paying_days
    FROM customer_after
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
