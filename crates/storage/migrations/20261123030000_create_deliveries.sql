-- Delivery of reminders by the sender: one row per reminder command (the idempotency key of
-- the command is unique, so a redelivered command never makes a second delivery), each attempt
-- recorded before the provider is called, and every outcome kept as the audit trail.

CREATE TABLE deliveries (
    -- Our send id: given to providers as metadata, searched for when reconciling.
    delivery_id          UUID        PRIMARY KEY,
    idempotency_key      TEXT        NOT NULL UNIQUE,
    reminder_id          UUID        NOT NULL,
    tenant               TEXT        NOT NULL,
    customer_id          TEXT        NOT NULL,
    invoice_ids          TEXT[]      NOT NULL,
    channel              TEXT        NOT NULL CHECK (channel IN ('email', 'sms')),
    segment              TEXT        NOT NULL,
    step_id              TEXT        NOT NULL,
    template             TEXT        NOT NULL,
    variant              TEXT,
    -- pending: waits for next_attempt_at; in_flight: an attempt is out (next_attempt_at is
    -- then the end of its lease); sent, skipped, failed: done; unknown: an attempt's outcome
    -- could not be established and a person decides.
    status               TEXT        NOT NULL CHECK (status IN (
                             'pending', 'in_flight', 'sent', 'skipped', 'failed', 'unknown')),
    next_attempt_at      TIMESTAMPTZ,
    -- The last attempt's outcome is unknown: ask the provider before sending again.
    reconcile            BOOLEAN     NOT NULL DEFAULT false,
    attempts             INTEGER     NOT NULL DEFAULT 0,
    provider             TEXT,
    provider_message_id  TEXT,
    recipient            TEXT,
    subject              TEXT,
    body_sha256          TEXT,
    skip_reason          TEXT,
    error_class          TEXT,
    error_code           TEXT,
    error_message        TEXT,
    -- The command as received (its envelope), and where it was read, for the dead-letter topic.
    command              JSONB       NOT NULL,
    source               JSONB       NOT NULL,
    received_at          TIMESTAMPTZ NOT NULL,
    sent_at              TIMESTAMPTZ,
    finished_at          TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status IN ('pending', 'in_flight')) = (next_attempt_at IS NOT NULL))
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'in_flight');
CREATE INDEX deliveries_sent_by_customer ON deliveries (customer_id, sent_at) WHERE status = 'sent';
CREATE INDEX deliveries_by_reminder ON deliveries (reminder_id);

-- Every attempt, with its outcome: when, through which provider, what it answered.
CREATE TABLE delivery_attempts (
    id                   BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id          UUID        NOT NULL REFERENCES deliveries (delivery_id),
    -- The delivery's attempt count when this one started (attempts that hit a configuration
    -- error are not counted against max_attempts, so a number can repeat).
    attempt              INTEGER     NOT NULL,
    started_at           TIMESTAMPTZ NOT NULL,
    finished_at          TIMESTAMPTZ,
    provider             TEXT        NOT NULL,
    outcome              TEXT,
    code                 TEXT,
    message              TEXT,
    provider_message_id  TEXT
);

CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);

-- Addresses that must not receive reminders: hard bounces, complaints, opt-outs, addresses the
-- provider marked inactive. Written by the sender (provider refusals) and the tracker
-- (webhooks, unsubscribes).
CREATE TABLE contact_suppressions (
    tenant      TEXT        NOT NULL,
    channel     TEXT        NOT NULL CHECK (channel IN ('email', 'sms')),
    -- Lower-cased email address, or E.164 number.
    address     TEXT        NOT NULL,
    reason      TEXT        NOT NULL CHECK (reason IN (
                    'hard_bounce', 'complaint', 'opt_out', 'inactive')),
    source      TEXT        NOT NULL,
    detail      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, channel, address)
);
