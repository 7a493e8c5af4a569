-- A reminder the sender held back for a reason that passes (the customer's frequency cap, a
-- pause or hold that began after it was queued) is deferred: it does not count as taken, and
-- the scheduler plans its step again. Only a paid, closed or suppressed reason ends a step.
ALTER TABLE reminders DROP CONSTRAINT reminders_status_check;
ALTER TABLE reminders ADD CONSTRAINT reminders_status_check CHECK (status IN (
    'awaiting_approval', 'queued', 'rejected', 'cancelled', 'deferred'));
