-- Payment behaviour is kept as sums: each batch adds what its invoices' changes do to them
-- (relance_domain::BehaviourChange) instead of reading every invoice of every customer it
-- touches to recompute them, which was 19 % of the database's time under ingest
-- (make bench --profile). Amounts per currency add up key by key; a currency whose sum is zero
-- is left out.
CREATE FUNCTION relance_add_amounts(stored JSONB, change JSONB) RETURNS JSONB
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(jsonb_object_agg(currency, total), '{}'::jsonb)
        FROM (
            SELECT currency, sum(amount::bigint) AS total
            FROM (SELECT * FROM jsonb_each_text(stored)
                  UNION ALL
                  SELECT * FROM jsonb_each_text(change)) AS amounts (currency, amount)
            GROUP BY currency
        ) AS totals
        WHERE total <> 0
    $$;

-- How many invoices are overdue changes with the date, not with events, so it cannot be a sum
-- kept by events: the count was stale from the day after each batch. It is no longer written;
-- ask the invoices (state and due date). The column stays for the previous release's pods
-- during a rolling upgrade (expand and contract) and goes in a later release.
COMMENT ON COLUMN customers.overdue_invoices IS
    'Deprecated, no longer written: count overdue invoices from the invoices table.';

-- `customer_since` now holds what the customer's profile says; readers fall back on
-- `first_invoice_on` (the scheduler reads `coalesce(customer_since, first_invoice_on)`).
COMMENT ON COLUMN customers.customer_since IS
    'The profile''s customer_since; when absent, first_invoice_on stands for it.';
