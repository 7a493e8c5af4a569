-- The two mechanisms every relance consumer and producer relies on.

-- Which events a consumer has already applied: inserting (consumer, source, id) with
-- ON CONFLICT DO NOTHING in the transaction that applies the event makes a redelivered event a
-- no-op (at-least-once delivery, exactly-once effect). CloudEvents ids are unique per source.
CREATE TABLE processed_events (
    consumer     TEXT        NOT NULL,
    event_source TEXT        NOT NULL,
    event_id     TEXT        NOT NULL,
    tenant       TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_source, event_id)
);

-- Retention jobs delete old rows by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Transactional outbox: a record to publish is written in the same transaction as the change
-- it reports, and a relay publishes it afterwards and marks it. Nothing is lost between a
-- database commit and a publish, and nothing is published for a change that rolled back.
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         TEXT        NOT NULL,
    message_key   TEXT,
    payload       BYTEA       NOT NULL,
    headers       JSONB       NOT NULL DEFAULT '[]'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    TEXT,
    CHECK (jsonb_typeof(headers) = 'array')
);

-- The relay reads the oldest unpublished records.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
