-- New customers per UTC day and the running total. Customers deleted in Stripe are left
-- out, as Stripe's own customer list leaves them out.
WITH per_day AS (
    SELECT reporting.client_day($timezone, created) AS day, count(*) AS new_customers
    FROM stripe.customers
    WHERE client_id = $client_id AND NOT coalesce(is_deleted, false)
    GROUP BY ALL
)
SELECT
    $client_id AS client_id,
    day,
    new_customers,
    sum(new_customers) OVER (ORDER BY day ROWS UNBOUNDED PRECEDING) AS total_customers
FROM per_day
