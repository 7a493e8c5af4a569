-- A customer's invoices are indexed with their next action, so that the claim's check that a
-- customer still has a due invoice, and the load of a claimed customer's due invoices, fetch
-- those rows only rather than every invoice of the customer (each row 2 KB with its facts).
-- With ten open invoices a customer and one due, the load read ten rows to keep one: make
-- bench (planning 100,000 due invoices among 1,000,000) measured it at 12.2 s of the
-- database's time before and 4.3 s after. The new index replaces the old one, whose lookups by
-- (tenant, customer_id) it still serves, so an invoice's update writes no more index entries
-- than before; next_action_at was already indexed, so its updates were not HOT before either.
DROP INDEX IF EXISTS invoices_by_customer;
CREATE INDEX invoices_by_customer ON invoices (tenant, customer_id, next_action_at);
