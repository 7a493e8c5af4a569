-- Ids are each tenant's own: two billing entities may both number an invoice F-2026-0001, and
-- an early event of one tenant must never squat another's invoice or customer. Every key and
-- every lookup index starts with the tenant, so the tables can later be distributed by tenant
-- (docs/operations.md#scaling-past-one-postgresql).
ALTER TABLE invoices DROP CONSTRAINT invoices_pkey;
ALTER TABLE invoices ADD PRIMARY KEY (tenant, invoice_id);
DROP INDEX invoices_by_customer;
CREATE INDEX invoices_by_customer ON invoices (tenant, customer_id);

ALTER TABLE customers DROP CONSTRAINT customers_pkey;
ALTER TABLE customers ADD PRIMARY KEY (tenant, customer_id);
-- The primary key now serves lookups by tenant.
DROP INDEX customers_by_tenant;

DROP INDEX reminders_by_customer;
CREATE INDEX reminders_by_customer ON reminders (tenant, customer_id, scheduled_for);

DROP INDEX deliveries_sent_by_customer;
CREATE INDEX deliveries_sent_by_customer ON deliveries (tenant, customer_id, sent_at)
    WHERE status = 'sent';
DROP INDEX deliveries_in_doubt_by_customer;
CREATE INDEX deliveries_in_doubt_by_customer ON deliveries (tenant, customer_id)
    WHERE sending_since IS NOT NULL;

DROP INDEX customer_actions_by_invoice;
CREATE INDEX customer_actions_by_invoice ON customer_actions (tenant, invoice_id, acted_at);

DROP INDEX manual_actions_by_subject;
CREATE INDEX manual_actions_by_subject ON manual_actions (tenant, subject_kind, subject_id, at);

-- A payment id is the tenant's own too.
ALTER TABLE attributions DROP CONSTRAINT attributions_pkey;
ALTER TABLE attributions ADD PRIMARY KEY (tenant, payment_id, reminder_id);

-- Queued commands name the invoices they are about as 'tenant invoice_id' (ids hold no space).
UPDATE outbox SET cancel_keys = ARRAY(
    SELECT (SELECT tenant FROM reminders r WHERE r.reminder_id = outbox.reminder_id) || ' ' || k
    FROM unnest(cancel_keys) AS k)
WHERE cancel_keys IS NOT NULL AND published_at IS NULL AND reminder_id IS NOT NULL;
