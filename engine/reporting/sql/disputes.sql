-- One row per dispute of the client's charges, in major units, on the client's calendar
-- day it was opened. Inquiries (status warning_*) are flagged: card networks, and Stripe's
-- dispute rate, count chargebacks only.
SELECT
    d.client_id,
    d.id,
    d.charge,
    d.created,
    reporting.client_day($timezone, d.created) AS day,
    lower(d.currency) AS currency,
    reporting.to_major(d.amount, d.currency) AS amount,
    d.status,
    d.reason,
    coalesce(d.status LIKE 'warning%', false) AS inquiry
FROM stripe.disputes d
WHERE d.client_id = $client_id AND NOT coalesce(d.is_deleted, false)
