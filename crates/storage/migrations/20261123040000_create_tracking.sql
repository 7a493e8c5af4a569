-- Tracking: what happened to reminders after they were sent (delivered, bounced, opened,
-- clicked), what customers did on the action pages, and which payments the reminders brought.

-- Delivery milestones reported by providers, and the first human open and click.
ALTER TABLE deliveries ADD COLUMN delivered_at TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN bounced_at TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN complained_at TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN first_opened_at TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN first_clicked_at TIMESTAMPTZ;
CREATE INDEX deliveries_by_provider_message ON deliveries (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Every open and click, from the pixel, our links or a provider, classified human or machine.
CREATE TABLE interactions (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          TEXT        NOT NULL,
    reminder_id     UUID        NOT NULL,
    delivery_id     UUID,
    customer_id     TEXT        NOT NULL,
    invoice_id      TEXT,
    kind            TEXT        NOT NULL CHECK (kind IN ('open', 'click')),
    link            TEXT,
    classification  TEXT        NOT NULL CHECK (classification IN ('human', 'machine')),
    machine_reason  TEXT,
    source          TEXT        NOT NULL CHECK (source IN ('tracking_pixel', 'tracked_link', 'provider_webhook')),
    provider        TEXT,
    user_agent      TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX interactions_by_reminder ON interactions (reminder_id, kind, occurred_at);

-- What customers did on the action pages. The action id derives from the link and the action,
-- so submitting the same form twice records one action.
CREATE TABLE customer_actions (
    action_id    UUID        PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    customer_id  TEXT        NOT NULL,
    invoice_id   TEXT        NOT NULL,
    reminder_id  UUID,
    action       TEXT        NOT NULL CHECK (action IN (
                     'already_paid', 'dispute', 'promise_to_pay', 'payment_plan_request', 'link_renewal')),
    reference    TEXT,
    reason       TEXT,
    promised_on  DATE,
    message      TEXT,
    acted_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX customer_actions_by_invoice ON customer_actions (invoice_id, acted_at);

-- Provider webhook events already handled (providers deliver some twice).
CREATE TABLE webhook_events (
    provider     TEXT        NOT NULL,
    event_key    TEXT        NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, event_key)
);

-- Payments credited to the reminders that preceded them.
CREATE TABLE attributions (
    payment_id         TEXT        NOT NULL,
    reminder_id        UUID        NOT NULL,
    tenant             TEXT        NOT NULL,
    invoice_id         TEXT        NOT NULL,
    customer_id        TEXT        NOT NULL,
    model              TEXT        NOT NULL CHECK (model IN ('last_touch', 'first_touch', 'linear')),
    credited_minor     BIGINT      NOT NULL CHECK (credited_minor >= 0),
    currency           CHAR(3)     NOT NULL,
    paid_at            TIMESTAMPTZ NOT NULL,
    reminder_sent_at   TIMESTAMPTZ NOT NULL,
    first_reminder_at  TIMESTAMPTZ,
    attributed_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (payment_id, reminder_id)
);
CREATE INDEX attributions_by_reminder ON attributions (reminder_id);
