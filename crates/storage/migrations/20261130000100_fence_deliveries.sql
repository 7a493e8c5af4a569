-- Exactly once under replicas, slow providers and rate limits (docs/providers.md).
--
-- claim_token fences every write after a claim: a dispatcher whose lease ran out can no longer
-- record an attempt or an outcome, because another claim changed the token.
ALTER TABLE deliveries ADD COLUMN claim_token UUID;

-- When the attempt whose outcome is not known began: set when an attempt is recorded, cleared
-- when its outcome is (kept when the outcome is ambiguous). A delivery claimed with it set is
-- reconciled with the provider before anything is sent again; one claimed without it never is
-- (an attempt that ended in a transient failure, or a claim that never reached the provider).
ALTER TABLE deliveries ADD COLUMN sending_since TIMESTAMPTZ;

UPDATE deliveries d
SET sending_since = coalesce(
        (SELECT a.started_at FROM delivery_attempts a
         WHERE a.delivery_id = d.delivery_id ORDER BY a.id DESC LIMIT 1),
        d.updated_at)
WHERE d.status IN ('pending', 'in_flight')
  AND (d.reconcile OR (d.status = 'in_flight' AND EXISTS (
          SELECT 1 FROM delivery_attempts a
          WHERE a.delivery_id = d.delivery_id AND a.finished_at IS NULL)));

-- Derived from sending_since from now on.
ALTER TABLE deliveries DROP COLUMN reconcile;

-- Attempts in doubt count against a customer's frequency cap.
CREATE INDEX deliveries_in_doubt_by_customer ON deliveries (customer_id)
    WHERE sending_since IS NOT NULL;

-- One token bucket per provider, shared by every sender replica: a provider's rate limit is
-- its account's, not a process's. Times are the database's clock, the one every replica sees.
CREATE TABLE provider_buckets (
    provider     TEXT             PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refilled_at  TIMESTAMPTZ      NOT NULL
);
