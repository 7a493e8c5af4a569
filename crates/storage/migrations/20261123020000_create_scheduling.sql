-- Scheduling: when each invoice needs the scheduler next, the reminders and tasks it decided,
-- the manual actions of people, customer-wide holds, and the link from queued commands in the
-- outbox to their invoices so that a payment can cancel them before they are published.

-- The ingestor sets next_action_at to "now" whenever an invoice changes, so the scheduler
-- re-plans it at once; the scheduler sets it to the time of the plan's next action (NULL: no
-- action until something changes). `plan` keeps the last plan, for inspection.
ALTER TABLE invoices ADD COLUMN next_action_at TIMESTAMPTZ;
ALTER TABLE invoices ADD COLUMN plan JSONB;
CREATE INDEX invoices_next_action ON invoices (next_action_at) WHERE next_action_at IS NOT NULL;

CREATE TABLE reminders (
    reminder_id      UUID        PRIMARY KEY,
    -- Tenant, step, trigger, invoices and attempt: the same reminder is never decided twice.
    idempotency_key  TEXT        NOT NULL UNIQUE,
    tenant           TEXT        NOT NULL,
    customer_id      TEXT        NOT NULL,
    invoice_ids      TEXT[]      NOT NULL,
    kind             TEXT        NOT NULL CHECK (kind IN ('message', 'task', 'escalation')),
    trigger          JSONB       NOT NULL,
    step_id          TEXT        NOT NULL,
    channel          TEXT        NOT NULL,
    segment          TEXT        NOT NULL,
    template         TEXT,
    variant          TEXT,
    experiment       TEXT,
    status           TEXT        NOT NULL CHECK (status IN (
                         'awaiting_approval', 'queued', 'rejected', 'cancelled')),
    scheduled_for    TIMESTAMPTZ NOT NULL,
    policy_id        TEXT        NOT NULL,
    policy_version   INTEGER     NOT NULL,
    -- The command to publish (a relance.reminder.send or relance.task.create event).
    topic            TEXT        NOT NULL,
    command          JSONB       NOT NULL,
    decided_by       TEXT,
    decided_at       TIMESTAMPTZ,
    decision_note    TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX reminders_by_customer ON reminders (customer_id, scheduled_for);
CREATE INDEX reminders_awaiting_approval ON reminders (tenant, created_at) WHERE status = 'awaiting_approval';
CREATE INDEX reminders_by_invoice ON reminders USING GIN (invoice_ids);

-- Every change a person makes through the admin API: who, what, why.
CREATE TABLE manual_actions (
    id            BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        TEXT        NOT NULL,
    subject_kind  TEXT        NOT NULL CHECK (subject_kind IN ('invoice', 'customer', 'reminder')),
    subject_id    TEXT        NOT NULL,
    action        TEXT        NOT NULL,
    actor         TEXT        NOT NULL,
    reason        TEXT,
    details       JSONB       NOT NULL DEFAULT '{}'::jsonb,
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX manual_actions_by_subject ON manual_actions (subject_kind, subject_id, at);

-- A hold on every invoice of a customer, placed by a person.
ALTER TABLE customers ADD COLUMN held_until DATE;
ALTER TABLE customers ADD COLUMN held BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE customers ADD COLUMN held_by TEXT;
ALTER TABLE customers ADD COLUMN hold_reason TEXT;

-- Queued commands name their invoices, so a payment, void, credit or dispute recorded before
-- the relay publishes them deletes them in the same transaction.
ALTER TABLE outbox ADD COLUMN cancel_keys TEXT[];
ALTER TABLE outbox ADD COLUMN reminder_id UUID;
CREATE INDEX outbox_pending_by_invoice ON outbox USING GIN (cancel_keys) WHERE published_at IS NULL;
