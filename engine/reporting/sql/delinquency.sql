-- Failed subscription payments and how they ended (docs/metrics.md, "Failed payments"):
--
-- recovered: a recurring invoice of a subscription whose first payment attempt failed and
--   that was paid later (Stripe's revenue recovery analytics: `attempt_count` above 1,
--   status `paid`; recurring payments only, so neither a subscription's first invoice nor
--   the first after its trial), on the day it was paid (`status_transitions.paid_at`).
-- churned: a subscription that stopped counting in MRR because its payment failed: canceled
--   with `cancellation_details.reason = 'payment_failed'` (Stripe's automatic cancellation
--   after the last retry), on the day it ended; or marked `unpaid` (the other setting for
--   the last retry), on the first day a build saw it unpaid.
-- Only subscriptions that counted in MRR; `mrr` is the subscription's MRR (its items).
CREATE OR REPLACE TEMP TABLE dq_subs AS
SELECT
    s.id AS subscription_id, s.customer, s.status, s.trial_end,
    coalesce(s.ended_at, s.canceled_at) AS ended_at,
    s.raw->'cancellation_details'->>'reason' AS cancel_reason,
    m.currency, m.mrr
FROM stripe.subscriptions s
JOIN reporting.subscription_mrr m ON m.client_id = $client_id AND m.subscription_id = s.id
WHERE s.client_id = $client_id AND NOT coalesce(s.is_deleted, false)
  AND m.counted_from IS NOT NULL AND m.currency IS NOT NULL;

CREATE OR REPLACE TEMP TABLE dq_invoices AS
SELECT
    coalesce(i.parent_subscription, i.subscription) AS subscription_id,
    i.id AS invoice_id, i.status, i.billing_reason, i.period_start, i.created,
    lower(i.currency) AS currency, i.amount_paid, i.amount_due,
    TRY_CAST(i.raw->>'attempt_count' AS BIGINT) AS attempts,
    to_timestamp(TRY_CAST(i.raw->'status_transitions'->>'paid_at' AS BIGINT)) AS paid_at
FROM stripe.invoices i
WHERE i.client_id = $client_id AND NOT coalesce(i.is_deleted, false)
  AND coalesce(i.parent_subscription, i.subscription) IS NOT NULL;

SELECT
    $client_id AS client_id, s.subscription_id, s.customer, i.currency,
    'recovered' AS outcome,
    reporting.client_day($timezone, coalesce(i.paid_at, i.created)) AS day,
    i.invoice_id, i.attempts, 'payment_recovered' AS reason,
    reporting.to_major(i.amount_paid, i.currency) AS amount,
    i.amount_paid AS amount_minor,
    s.mrr
FROM dq_invoices i
JOIN dq_subs s USING (subscription_id)
WHERE i.status = 'paid' AND i.attempts > 1
  AND coalesce(i.billing_reason, '') <> 'subscription_create'
  AND i.period_start IS DISTINCT FROM s.trial_end
UNION ALL BY NAME
SELECT
    $client_id AS client_id, s.subscription_id, s.customer, s.currency,
    'churned' AS outcome,
    CASE WHEN s.status = 'unpaid' THEN h.unpaid_day
         ELSE reporting.client_day($timezone, s.ended_at) END AS day,
    li.invoice_id, li.attempts,
    CASE WHEN s.status = 'unpaid' THEN 'unpaid' ELSE 'payment_failed' END AS reason,
    reporting.to_major(li.amount_due, li.currency) AS amount,
    li.amount_due AS amount_minor,
    s.mrr
FROM dq_subs s
LEFT JOIN (
    SELECT subscription_id, min(day) AS unpaid_day
    FROM reporting.subscription_mrr_history
    WHERE client_id = $client_id AND status = 'unpaid' GROUP BY ALL
) h USING (subscription_id)
LEFT JOIN (
    SELECT subscription_id, arg_max(invoice_id, created) AS invoice_id,
           arg_max(attempts, created) AS attempts, arg_max(amount_due, created) AS amount_due,
           arg_max(currency, created) AS currency
    FROM dq_invoices
    WHERE status IN ('open', 'uncollectible', 'void') AND coalesce(attempts, 0) > 0
    GROUP BY ALL
) li USING (subscription_id)
WHERE (s.status = 'canceled' AND s.cancel_reason = 'payment_failed' AND s.ended_at IS NOT NULL)
   OR (s.status = 'unpaid' AND h.unpaid_day IS NOT NULL)
