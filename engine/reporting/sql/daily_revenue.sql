-- Payments per UTC day and currency, in major units. Amounts are summed in minor units
-- first and converted once, so no rounding accumulates. Fees come from balance
-- transactions and are in the account's settlement currency.
WITH charges AS (
    SELECT
        reporting.client_day($timezone, created) AS day,
        lower(currency) AS currency,
        sum(CASE WHEN status = 'succeeded' THEN coalesce(amount_captured, amount) ELSE 0 END)
            AS gross,
        count(*) FILTER (WHERE status = 'succeeded') AS successful_payments,
        count(*) FILTER (WHERE status = 'failed') AS failed_payments
    FROM stripe.charges
    WHERE client_id = $client_id AND NOT coalesce(is_deleted, false)
    GROUP BY ALL
),
refunds AS (
    SELECT
        reporting.client_day($timezone, created) AS day,
        lower(currency) AS currency,
        sum(amount) AS refunds,
        count(*) AS refund_count
    FROM stripe.refunds
    WHERE client_id = $client_id
      AND NOT coalesce(is_deleted, false)
      AND coalesce(status, 'succeeded') NOT IN ('failed', 'canceled')
    GROUP BY ALL
),
balance AS (
    SELECT
        reporting.client_day($timezone, created) AS day,
        lower(currency) AS currency,
        sum(coalesce(fee, 0)) AS fees,
        -sum(CASE WHEN reporting_category IN ('dispute', 'dispute_reversal') THEN amount
                  ELSE 0 END) AS disputes
    FROM stripe.balance_transactions
    WHERE client_id = $client_id
    GROUP BY ALL
),
days AS (
    SELECT day, currency FROM charges
    UNION SELECT day, currency FROM refunds
    UNION SELECT day, currency FROM balance
),
minor AS (
    SELECT
        d.day,
        d.currency,
        coalesce(c.gross, 0) AS gross,
        coalesce(r.refunds, 0) AS refunds,
        coalesce(b.disputes, 0) AS disputes,
        coalesce(b.fees, 0) AS fees,
        coalesce(c.successful_payments, 0) AS successful_payments,
        coalesce(c.failed_payments, 0) AS failed_payments,
        coalesce(r.refund_count, 0) AS refund_count
    FROM days d
    LEFT JOIN charges c USING (day, currency)
    LEFT JOIN refunds r USING (day, currency)
    LEFT JOIN balance b USING (day, currency)
)
SELECT
    $client_id AS client_id,
    day,
    currency,
    reporting.to_major(gross, currency) AS gross,
    reporting.to_major(refunds, currency) AS refunds,
    reporting.to_major(disputes, currency) AS disputes,
    reporting.to_major(fees, currency) AS fees,
    reporting.to_major(gross - refunds - disputes - fees, currency) AS net,
    successful_payments,
    failed_payments,
    refund_count
FROM minor
