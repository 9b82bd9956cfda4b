-- One slim row per charge (no raw JSON) for the recent payments table.
SELECT
    c.client_id,
    c.id,
    c.created,
    reporting.client_day($timezone, c.created) AS day,
    lower(c.currency) AS currency,
    reporting.to_major(c.amount, c.currency) AS amount,
    c.amount AS amount_minor,
    reporting.to_major(coalesce(c.amount_refunded, 0), c.currency) AS amount_refunded,
    coalesce(c.amount_refunded, 0) AS amount_refunded_minor,
    c.status,
    coalesce(c.refunded, false) AS refunded,
    coalesce(c.disputed, false) AS disputed,
    c.customer,
    cu.name AS customer_name,
    cu.email AS customer_email,
    c.description,
    c.failure_code,
    -- The customer's country: their address, else the charge's billing address, else the
    -- card's issuing country.
    upper(coalesce(cu.raw->'address'->>'country',
                   c.raw->'billing_details'->'address'->>'country',
                   c.raw->'payment_method_details'->'card'->>'country')) AS country
FROM stripe.charges c
LEFT JOIN stripe.customers cu
    ON cu.client_id = c.client_id AND cu.id = c.customer
WHERE c.client_id = $client_id AND NOT coalesce(c.is_deleted, false)
