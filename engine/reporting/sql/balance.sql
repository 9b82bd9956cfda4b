-- Every balance read, per currency, in major units.
SELECT
    client_id,
    captured_at,
    reporting.client_day($timezone, captured_at) AS day,
    lower(currency) AS currency,
    reporting.to_major(coalesce(available, 0), currency) AS available,
    coalesce(available, 0) AS available_minor,
    reporting.to_major(coalesce(pending, 0), currency) AS pending,
    coalesce(pending, 0) AS pending_minor
FROM stripe.balance
WHERE client_id = $client_id
