-- One row per held topic of each service (`producer`, its connections' application name): how
-- long the hold lasts and how long the last one was, so that every replica's relay reads the
-- same hold and the same backoff, and a claim learns which topics are held from this small
-- table instead of aggregating the held records. `released`: the hold ended and the topic's
-- records were put back in the claim's index; the row stays until a record of the topic is
-- published, so that failing again doubles the hold. Records written for a held topic while
-- it is held are held by the claim that meets them, in the claim's transaction.
CREATE TABLE outbox_topic_holds (
    producer TEXT NOT NULL,
    topic TEXT NOT NULL,
    held_until TIMESTAMPTZ NOT NULL,
    hold_seconds DOUBLE PRECISION NOT NULL CHECK (hold_seconds > 0),
    released BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (producer, topic)
);

-- Holds written by the relays before this table (held records, no row): each topic becomes one
-- hold ending at its records' latest end, so the next claim releases it as before.
INSERT INTO outbox_topic_holds (producer, topic, held_until, hold_seconds)
SELECT producer, topic, max(held_until), 30
FROM outbox
WHERE held_until IS NOT NULL AND producer IS NOT NULL
GROUP BY producer, topic;
-- Records written before services named themselves belong to no service's hold: back in the
-- claim's index, where the next relay holds them again if their topic is still missing.
UPDATE outbox SET held_until = NULL WHERE held_until IS NOT NULL AND producer IS NULL;
