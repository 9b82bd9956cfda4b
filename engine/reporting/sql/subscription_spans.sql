-- The spans of UTC days in which each subscription counts in MRR, with its MRR in each.
--
-- A subscription counts from its counted_from day until its counted_until day (exclusive),
-- for the MRR its history recorded: each recorded value holds from the day it was first
-- seen until the next one; the first recorded value also holds back to counted_from.
-- Days recorded as unpaid or paused do not count. A span still counting has no end day.
WITH subs AS (
    SELECT
        subscription_id,
        coalesce(customer, 'subscription:' || subscription_id) AS customer,
        currency,
        reporting.client_day($timezone, counted_from) AS from_day,
        coalesce(reporting.client_day($timezone, counted_until), $today::DATE + 1) AS until_day
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
)
SELECT
    $client_id AS client_id, subscription_id, customer, currency,
    d_from AS from_day, nullif(d_to, $today::DATE + 1) AS until_day, mrr
FROM spans
WHERE d_from < d_to
