-- The client itself, one row: who it is, its calendar, its main currency, and how it stands.
SELECT
    $client_id AS client_id,
    CAST($name AS VARCHAR) AS name,
    CAST($timezone AS VARCHAR) AS timezone,
    (SELECT currency FROM reporting.currencies
        WHERE client_id = $client_id AND is_main) AS currency,
    CAST($state AS VARCHAR) AS state,
    $now::TIMESTAMPTZ AS last_sync_at
