-- Per-currency sums stay within BIGINT: a sum past it would make every later write of the
-- customer fail (and the stored value unreadable), so it saturates as the domain's sums do
-- (BehaviourChange::applied_to).
CREATE OR REPLACE FUNCTION relance_add_amounts(stored JSONB, change JSONB) RETURNS JSONB
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(jsonb_object_agg(currency,
                   least(greatest(total, -9223372036854775808), 9223372036854775807)::bigint),
               '{}'::jsonb)
        FROM (
            SELECT currency, sum(amount::numeric) AS total
            FROM (SELECT * FROM jsonb_each_text(stored)
                  UNION ALL
                  SELECT * FROM jsonb_each_text(change)) AS amounts (currency, amount)
            GROUP BY currency
        ) AS totals
        WHERE total <> 0
    $$;

-- `customer_since` holds what the profile says from now on; rows written before held the first
-- invoice's date when the profile said nothing, which would hide a later-known earlier invoice
-- behind `coalesce(customer_since, first_invoice_on)`.
UPDATE customers
SET customer_since = (facts #>> '{profile,value,segment,customer_since}')::date
WHERE customer_since IS DISTINCT FROM (facts #>> '{profile,value,segment,customer_since}')::date;
