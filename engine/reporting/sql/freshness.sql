-- When this build ran and how recent the synced rows it read are.
WITH writes AS (
    SELECT max(_synced_at) AS written_at FROM stripe.charges WHERE client_id = $client_id
    UNION ALL SELECT max(_synced_at) FROM stripe.refunds WHERE client_id = $client_id
    UNION ALL SELECT max(_synced_at) FROM stripe.customers WHERE client_id = $client_id
    UNION ALL SELECT max(_synced_at) FROM stripe.subscriptions WHERE client_id = $client_id
    UNION ALL SELECT max(_synced_at) FROM stripe.balance_transactions
        WHERE client_id = $client_id
    UNION ALL SELECT max(_synced_at) FROM stripe.payouts WHERE client_id = $client_id
    UNION ALL SELECT max(captured_at) FROM stripe.balance WHERE client_id = $client_id
)
SELECT $client_id AS client_id, $now::TIMESTAMPTZ AS built_at, max(written_at) AS synced_at
FROM writes
