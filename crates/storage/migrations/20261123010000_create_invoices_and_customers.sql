-- The dunning state of every invoice and the profile of every customer, as the ingestor keeps
-- them. `facts` holds the domain record (relance_domain::Invoice / CustomerFacts) the state is
-- derived from; the other columns are that derivation, for queries and indexes.
-- Invoice and customer ids are unique across the deployment; `tenant` records the owner.

CREATE TABLE invoices (
    invoice_id         TEXT        PRIMARY KEY,
    tenant             TEXT        NOT NULL,
    customer_id        TEXT        NOT NULL,
    state              TEXT        NOT NULL CHECK (state IN (
                           'awaiting_invoice', 'not_due', 'overdue', 'partially_paid',
                           'paused', 'escalated', 'closed')),
    pause_reason       TEXT        CHECK (pause_reason IN (
                           'dispute', 'promise_to_pay', 'manual_hold', 'awaiting_approval',
                           'payment_claimed')),
    pause_until        DATE,
    escalated_to       TEXT        CHECK (escalated_to IN ('person', 'agency')),
    closed_reason      TEXT        CHECK (closed_reason IN ('paid', 'voided', 'credited', 'written_off')),
    currency           CHAR(3),
    total_minor        BIGINT      NOT NULL,
    amount_due_minor   BIGINT      NOT NULL CHECK (amount_due_minor >= 0),
    overpaid_minor     BIGINT      NOT NULL CHECK (overpaid_minor >= 0),
    net_paid_minor     BIGINT      NOT NULL,
    number             TEXT,
    issued_on          DATE,
    due_on             DATE,
    paid_at            TIMESTAMPTZ,
    -- The date the state columns were derived for (states such as overdue depend on it).
    state_as_of        DATE        NOT NULL,
    facts              JSONB       NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((state = 'paused') = (pause_reason IS NOT NULL)),
    CHECK ((state = 'closed') = (closed_reason IS NOT NULL))
);

CREATE INDEX invoices_by_customer ON invoices (customer_id);
CREATE INDEX invoices_open_by_due_date ON invoices (tenant, due_on)
    WHERE state NOT IN ('closed', 'awaiting_invoice');

CREATE TABLE customers (
    customer_id        TEXT        PRIMARY KEY,
    tenant             TEXT        NOT NULL,
    -- Profile, from the newest customer event (NULL until one arrives).
    legal_name         TEXT,
    first_name         TEXT,
    last_name          TEXT,
    email              TEXT,
    phone              TEXT,
    locale             TEXT,
    timezone           TEXT,
    country            TEXT,
    vip                BOOLEAN     NOT NULL DEFAULT false,
    risk_level         TEXT        CHECK (risk_level IN ('low', 'medium', 'high')),
    customer_since     DATE,
    tags               TEXT[]      NOT NULL DEFAULT '{}',
    preferred_channel  TEXT        CHECK (preferred_channel IN ('email', 'sms', 'phone_call', 'letter')),
    -- Payment behaviour, recomputed from the customer's invoices in every batch that touches them.
    paid_invoices      INTEGER     NOT NULL DEFAULT 0,
    paid_on_time       INTEGER     NOT NULL DEFAULT 0,
    total_days_late    BIGINT      NOT NULL DEFAULT 0,
    open_invoices      INTEGER     NOT NULL DEFAULT 0,
    overdue_invoices   INTEGER     NOT NULL DEFAULT 0,
    open_balance       JSONB       NOT NULL DEFAULT '{}'::jsonb,
    lifetime_paid      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    first_invoice_on   DATE,
    facts              JSONB       NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX customers_by_tenant ON customers (tenant);

-- Dead-letter records go through the outbox too, and keep the original record key, which may
-- be any bytes.
ALTER TABLE outbox ALTER COLUMN message_key TYPE BYTEA USING convert_to(message_key, 'UTF8');
