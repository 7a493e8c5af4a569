-- The planning queue's index keeps one entry per invoice version, not posting lists. Planning
-- moves an invoice's next_action_at forward (a new index entry; the old one is dead) and many
-- invoices share a next_action_at (an ingest batch marks its invoices with one instant), so
-- B-tree deduplication packed the dead entries of planned invoices into posting lists with
-- live ones. A posting list is marked dead only when all its entries are, so every claim went
-- back to the heap for entries already planned: the candidate scan was 39 % of the database's
-- time when planning 100,000 due invoices among 1,000,000 (make bench --profile). Without
-- deduplication each entry is marked dead on its own at the first scan that finds it so, and
-- later claims step over it.
DROP INDEX IF EXISTS invoices_next_action;
CREATE INDEX invoices_next_action ON invoices (next_action_at)
    WITH (deduplicate_items = off)
    WHERE next_action_at IS NOT NULL;
