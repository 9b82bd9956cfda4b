-- Today's MRR and status of each subscription, kept only where they differ from the last
-- ones recorded: the history of plan changes, quantity changes and status changes.
WITH latest AS (
    SELECT subscription_id, arg_max(mrr, day) AS mrr, arg_max(status, day) AS status
    FROM reporting.subscription_mrr_history
    WHERE client_id = $client_id AND day < $today
    GROUP BY subscription_id
)
SELECT
    $client_id AS client_id,
    s.subscription_id,
    $today::DATE AS day,
    s.currency,
    s.mrr,
    s.status
FROM reporting.subscription_mrr s
LEFT JOIN latest l USING (subscription_id)
WHERE s.client_id = $client_id
  AND (l.subscription_id IS NULL
       OR l.mrr IS DISTINCT FROM s.mrr
       OR l.status IS DISTINCT FROM s.status)
