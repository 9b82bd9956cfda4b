-- Each subscription's MRR now, and the span of time it counts in MRR (docs/metrics.md).
--
-- An item's monthly value: unit amount x quantity, normalised from its billing interval
-- (year: /12, month: x1, week: x52/12, day: x365/12, each divided by interval_count).
-- Forever discounts apply: an item's own first, then the subscription's; percent off
-- before amount off; never below zero. Once and repeating coupons end, so they do not
-- change recurring revenue. Metered and tiered prices have no fixed amount: left out.
-- Built in stages, each a temporary table: a large account's subscriptions then never
-- stand in memory inside one wide plan (every hash table of a plan holds memory at once),
-- and the raw JSON is read once, row by row, into the few fields used here.
CREATE OR REPLACE TEMP TABLE mrr_subs AS
SELECT
    id, customer, status, lower(currency) AS currency,
    coalesce(start_date, created) AS start_date,
    trial_end, ended_at, canceled_at, cancel_at, cancel_at_period_end, discounts,
    raw->'discount' AS legacy_discount
FROM stripe.subscriptions
WHERE client_id = $client_id AND NOT coalesce(is_deleted, false);

CREATE OR REPLACE TEMP TABLE mrr_items AS
SELECT
    i.subscription,
    i.id AS item_id,
    lower(coalesce(i.currency, s.currency)) AS currency,
    coalesce(i.quantity, 1) AS quantity,
    coalesce(
        i.unit_amount::DOUBLE,
        TRY_CAST(i.raw->'price'->>'unit_amount_decimal' AS DOUBLE),
        TRY_CAST(i.raw->'plan'->>'amount' AS DOUBLE)
    ) AS unit_amount,
    coalesce(i.interval, i.raw->'plan'->>'interval') AS interval,
    greatest(coalesce(i.interval_count,
                      TRY_CAST(i.raw->'plan'->>'interval_count' AS BIGINT), 1), 1)
        AS interval_count,
    coalesce(i.raw->'price'->'recurring'->>'usage_type',
             i.raw->'plan'->>'usage_type', 'licensed') AS usage_type,
    i.discounts
FROM stripe.subscription_items i
JOIN mrr_subs s ON s.id = i.subscription
WHERE i.client_id = $client_id AND NOT coalesce(i.is_deleted, false);

-- Discounts come in several shapes across API versions: `discounts` holds ids or expanded
-- objects whose coupon sits at `coupon` or `source.coupon`; older versions have one
-- expanded `discount`. An id alone takes the coupon of an expanded twin with that id.
-- Only forever coupons change recurring revenue.
CREATE OR REPLACE TEMP TABLE mrr_forever AS
WITH discount_json AS (
    SELECT 'subscription' AS level, id AS owner, unnest(json_extract(discounts, '$[*]')) AS d
    FROM mrr_subs
    UNION ALL
    SELECT 'subscription', id, legacy_discount FROM mrr_subs
    WHERE json_type(legacy_discount) = 'OBJECT'
    UNION ALL
    SELECT 'item', item_id, unnest(json_extract(discounts, '$[*]')) FROM mrr_items
),
discount_parts AS (
    SELECT
        level,
        owner,
        CASE json_type(d) WHEN 'VARCHAR' THEN d->>'$' ELSE d->>'id' END AS discount_id,
        CASE
            WHEN json_type(d->'coupon') = 'OBJECT' THEN d->'coupon'
            WHEN json_type(d->'source'->'coupon') = 'OBJECT' THEN d->'source'->'coupon'
        END AS coupon
    FROM discount_json
),
coupons AS (
    SELECT level, owner, any_value(coupon) AS coupon
    FROM discount_parts
    WHERE coupon IS NOT NULL OR discount_id IS NOT NULL
    GROUP BY level, owner, coalesce(discount_id, coupon->>'id')
    HAVING any_value(coupon) IS NOT NULL
)
SELECT level, owner, coupon, TRY_CAST(coupon->>'percent_off' AS DOUBLE) AS percent_off
FROM coupons
WHERE coupon->>'duration' = 'forever';

WITH subs AS (SELECT * FROM mrr_subs),
items AS (SELECT * FROM mrr_items),
forever AS (SELECT * FROM mrr_forever),
item_discounts AS (
    SELECT
        i.item_id,
        product(1 - coalesce(f.percent_off, 0) / 100) AS keep_share,
        sum(coalesce(reporting.coupon_amount_off(f.coupon, i.currency), 0)) AS amount_off
    FROM forever f JOIN items i ON f.level = 'item' AND f.owner = i.item_id
    GROUP BY ALL
),
item_mrr AS (
    SELECT
        i.subscription,
        i.currency,
        i.quantity,
        i.interval,
        i.interval_count,
        reporting.monthly(i.unit_amount * i.quantity, i.interval, i.interval_count) AS list_minor,
        greatest(
            list_minor * coalesce(d.keep_share, 1)
                - reporting.monthly(coalesce(d.amount_off, 0), i.interval, i.interval_count),
            0
        ) AS net_minor
    FROM items i
    LEFT JOIN item_discounts d USING (item_id)
    WHERE i.usage_type = 'licensed'
      AND i.unit_amount IS NOT NULL
      AND i.interval IN ('day', 'week', 'month', 'year')
),
sub_items AS (
    SELECT
        subscription AS id,
        any_value(currency) AS currency,
        count(*) AS items,
        sum(quantity) AS quantity,
        sum(list_minor) AS list_minor,
        sum(net_minor) AS items_net_minor,
        -- Items of one subscription share a billing interval; take the largest item's.
        arg_max(interval, list_minor) AS interval,
        arg_max(interval_count, list_minor) AS interval_count
    FROM item_mrr
    GROUP BY subscription
),
sub_discounts AS (
    SELECT
        s.id,
        product(1 - coalesce(f.percent_off, 0) / 100) AS keep_share,
        sum(coalesce(reporting.coupon_amount_off(f.coupon, coalesce(s.currency, si.currency)), 0))
            AS amount_off
    FROM forever f
    JOIN subs s ON f.level = 'subscription' AND f.owner = s.id
    LEFT JOIN sub_items si ON si.id = s.id
    GROUP BY ALL
),
valued AS (
    SELECT
        s.*,
        coalesce(s.currency, si.currency) AS cur,
        si.interval,
        si.interval_count,
        coalesce(si.items, 0) AS items,
        coalesce(si.quantity, 0) AS quantity,
        coalesce(si.list_minor, 0) AS list_minor,
        greatest(
            coalesce(si.items_net_minor, 0) * coalesce(d.keep_share, 1)
                - coalesce(reporting.monthly(d.amount_off, si.interval, si.interval_count), 0),
            0
        ) AS net_minor,
        -- Trials and incomplete subscriptions never count; a trial converts at trial_end.
        CASE WHEN s.status IN ('active', 'past_due', 'canceled', 'unpaid', 'paused')
             THEN greatest(s.start_date, coalesce(s.trial_end, s.start_date)) END
            AS counted_from,
        CASE WHEN s.status IN ('active', 'past_due', 'canceled', 'unpaid', 'paused')
             THEN coalesce(
                 s.ended_at,
                 CASE WHEN s.status = 'canceled'
                      THEN coalesce(s.canceled_at, s.cancel_at, s.start_date) END
             ) END AS counted_until
    FROM subs s
    LEFT JOIN sub_items si USING (id)
    LEFT JOIN sub_discounts d USING (id)
)
SELECT
    $client_id AS client_id,
    id AS subscription_id,
    customer,
    status,
    cur AS currency,
    interval,
    interval_count,
    items,
    quantity,
    round(list_minor / pow(10, reporting.currency_exponent(cur)), 4)::DECIMAL(18, 4) AS list_mrr,
    round(net_minor / pow(10, reporting.currency_exponent(cur)), 4)::DECIMAL(18, 4) AS mrr,
    list_mrr - mrr AS discount_mrr,
    counted_from,
    counted_until,
    status IN ('active', 'past_due') AND counted_from <= $now::TIMESTAMPTZ AS in_mrr,
    coalesce(cancel_at_period_end, false) AS cancel_at_period_end,
    cancel_at
FROM valued
