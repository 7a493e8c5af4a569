-- Publishing never blocks ingestion, dead letters always land, and a record is never retried
-- forever (docs/operations.md).

-- Each service relays the records its own connections wrote (the connection's
-- application_name, relance-<service>), under a lock of its own: one service's stuck publisher
-- never holds another's. Rows written before this migration have none and go with any relay.
ALTER TABLE outbox ADD COLUMN producer TEXT DEFAULT current_setting('application_name', true);

-- A record the broker refuses for good (too large, invalid) ends here, with last_error, and is
-- never retried; an alert watches relance_outbox_failed_total.
ALTER TABLE outbox ADD COLUMN failed_at TIMESTAMPTZ;

DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (producer, id)
    WHERE published_at IS NULL AND failed_at IS NULL;

-- Every dead letter, in full: the topic gets a copy cut to the broker's size limit when the
-- original is too large; this table keeps the whole record, for people and for replay.
CREATE TABLE dead_letters (
    id                BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service           TEXT        NOT NULL,
    reason            TEXT        NOT NULL,
    detail            TEXT        NOT NULL,
    source_topic      TEXT        NOT NULL,
    source_partition  INTEGER     NOT NULL,
    source_offset     BIGINT      NOT NULL,
    event_id          TEXT,
    event_type        TEXT,
    tenant            TEXT,
    original_key      BYTEA,
    original_payload  BYTEA,
    original_headers  JSONB       NOT NULL DEFAULT '[]'::jsonb,
    -- SHA-256 of the original value, also in the dead-letter record's headers.
    original_sha256   TEXT        NOT NULL,
    -- The copy on the topic was cut to fit.
    truncated         BOOLEAN     NOT NULL DEFAULT false,
    failed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at       TIMESTAMPTZ,
    replay_count      INTEGER     NOT NULL DEFAULT 0
);

CREATE INDEX dead_letters_by_reason ON dead_letters (reason, failed_at);
CREATE INDEX dead_letters_by_time ON dead_letters (failed_at);

-- What each processed event said, so that the same id with another payload is told apart
-- from a redelivery.
ALTER TABLE processed_events ADD COLUMN payload_sha256 TEXT;

-- Amounts in another currency than the invoice's are kept in its facts but left out of the
-- sums; how many, so that people can see them (the admin timeline marks them too).
ALTER TABLE invoices ADD COLUMN conflicting_amounts INTEGER NOT NULL DEFAULT 0;
