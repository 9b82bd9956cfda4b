-- Each subscription's MRR shared among its current plans (price and product): each item's
-- share is its list value (unit amount x quantity a month) within the subscription's, so
-- the shares add up to the subscription's MRR, discounts included. Stripe keeps only the
-- current items: a subscription's past MRR is shared by its plans of today.
WITH items AS (
    SELECT
        i.subscription AS subscription_id,
        i.price,
        i.product,
        coalesce(reporting.monthly(i.unit_amount * coalesce(i.quantity, 1), i.interval,
                                   greatest(coalesce(i.interval_count, 1), 1)), 0) AS list_minor
    FROM stripe.subscription_items i
    WHERE i.client_id = $client_id AND NOT coalesce(i.is_deleted, false)
),
plans AS (
    SELECT subscription_id, price, product, sum(list_minor) AS list_minor,
           count(*) AS items
    FROM items GROUP BY ALL
)
SELECT
    $client_id AS client_id,
    p.subscription_id,
    p.price,
    p.product,
    coalesce(pr.name, p.product, p.price) AS plan,
    m.currency,
    p.items,
    CAST(m.mrr * coalesce(p.list_minor / nullif(sum(p.list_minor) OVER w, 0), 1.0 / count(*) OVER w)
         AS DECIMAL(18, 4)) AS mrr
FROM plans p
JOIN reporting.subscription_mrr m
    ON m.client_id = $client_id AND m.subscription_id = p.subscription_id
LEFT JOIN stripe.products pr
    ON pr.client_id = $client_id AND pr.id = p.product
WINDOW w AS (PARTITION BY p.subscription_id)
