-- Retention and erasure (docs/operations.md#retention and #erasure): the retention job finds
-- old rows by age, erasure finds a customer's rows by tenant and customer.
CREATE INDEX deliveries_finished ON deliveries ((coalesce(finished_at, updated_at)))
    WHERE status IN ('sent', 'skipped', 'failed', 'unknown');
CREATE INDEX deliveries_by_tenant_customer ON deliveries (tenant, customer_id);
CREATE INDEX interactions_by_time ON interactions (occurred_at);
CREATE INDEX interactions_by_tenant_customer ON interactions (tenant, customer_id);
CREATE INDEX customer_actions_by_tenant_customer ON customer_actions (tenant, customer_id);
