-- The client's currencies. The main one has the most successful payments, then the most
-- active subscriptions: counts, because amounts in different currencies cannot be compared.
WITH seen AS (
    SELECT currency FROM reporting.daily_revenue WHERE client_id = $client_id
    UNION SELECT currency FROM reporting.subscription_mrr
        WHERE client_id = $client_id AND currency IS NOT NULL
    UNION SELECT currency FROM reporting.balance WHERE client_id = $client_id
    UNION SELECT currency FROM reporting.payouts WHERE client_id = $client_id
),
payments AS (
    SELECT currency, sum(successful_payments) AS successful_payments
    FROM reporting.daily_revenue WHERE client_id = $client_id
    GROUP BY ALL
),
subscriptions AS (
    SELECT currency, count(*) FILTER (WHERE in_mrr) AS active_subscriptions
    FROM reporting.subscription_mrr WHERE client_id = $client_id
    GROUP BY ALL
),
ranked AS (
    SELECT
        s.currency,
        coalesce(p.successful_payments, 0) AS successful_payments,
        coalesce(b.active_subscriptions, 0) AS active_subscriptions,
        row_number() OVER (
            ORDER BY coalesce(p.successful_payments, 0) DESC,
                     coalesce(b.active_subscriptions, 0) DESC,
                     s.currency
        ) AS rank
    FROM seen s
    LEFT JOIN payments p USING (currency)
    LEFT JOIN subscriptions b USING (currency)
)
SELECT
    $client_id AS client_id,
    currency,
    reporting.currency_exponent(currency) AS exponent,
    successful_payments,
    active_subscriptions,
    rank = 1 AS is_main
FROM ranked
