-- Every subscription that had a trial: when it started and ended (the trial's end, or the
-- subscription's end when it was canceled during the trial), and whether it converted:
-- counted in MRR (above zero) from the trial's end.
SELECT
    $client_id AS client_id,
    s.id AS subscription_id,
    s.customer,
    lower(coalesce(m.currency, s.currency)) AS currency,
    s.trial_start,
    least(s.trial_end, coalesce(s.ended_at, s.trial_end)) AS trial_end,
    reporting.client_day($timezone, s.trial_start) AS start_day,
    reporting.client_day($timezone, least(s.trial_end, coalesce(s.ended_at, s.trial_end))) AS end_day,
    least(s.trial_end, coalesce(s.ended_at, s.trial_end)) <= $now::TIMESTAMPTZ AS ended,
    coalesce(m.counted_from IS NOT NULL AND m.counted_from <= $now::TIMESTAMPTZ
             AND (m.counted_until IS NULL OR m.counted_until > m.counted_from)
             AND m.mrr > 0, false) AS converted
FROM stripe.subscriptions s
LEFT JOIN reporting.subscription_mrr m
    ON m.client_id = $client_id AND m.subscription_id = s.id
WHERE s.client_id = $client_id AND NOT coalesce(s.is_deleted, false)
  AND s.trial_start IS NOT NULL AND s.trial_end IS NOT NULL
