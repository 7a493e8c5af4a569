-- A topic the broker says is missing or not writable (not created yet, an ACL not granted) is
-- held: its pending records wait, with `held_until`, while the other topics publish. Held
-- records leave the claim's index, so a claim never reads through a held topic's backlog
-- however long the incident lasts; their own small index finds them to release them.
ALTER TABLE outbox ADD COLUMN held_until TIMESTAMPTZ;

DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (producer, id)
    WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL;
CREATE INDEX outbox_held ON outbox (producer, topic, held_until)
    WHERE held_until IS NOT NULL;
