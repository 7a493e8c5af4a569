-- The index a payment's cancellation searches (`cancel_pending_for_invoices`) held an entry for
-- every unpublished outbox record, though only queued reminders carry cancel keys: the
-- ingestor's own events (one per applied event) filled it with null items, and GIN's pending
-- list (fastupdate), which every search reads through, with them. Under ingest the
-- cancellation took 216 ms on average and was 45 % of the database's time (make bench
-- --profile). Only records with cancel keys are indexed now (the `&&` operator is strict, so
-- PostgreSQL proves the predicate from the query), and entries go straight into the index:
-- the index is small and a payment waits on its search.
DROP INDEX IF EXISTS outbox_pending_by_invoice;
CREATE INDEX outbox_pending_by_invoice ON outbox USING GIN (cancel_keys)
    WITH (fastupdate = off)
    WHERE published_at IS NULL AND cancel_keys IS NOT NULL;
