-- Payouts to the bank, by the day they are expected to arrive. Stripe gives arrival_date
-- as a date (midnight UTC), so it stays that date in every time zone.
SELECT
    client_id,
    id,
    created,
    reporting.utc_day(coalesce(arrival_date, created)) AS arrival_day,
    lower(currency) AS currency,
    reporting.to_major(amount, currency) AS amount,
    amount AS amount_minor,
    status,
    method
FROM stripe.payouts
WHERE client_id = $client_id AND NOT coalesce(is_deleted, false)
