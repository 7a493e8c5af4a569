//! The tracker's records for the outbox: dunning events and tasks.

use chrono::{DateTime, Utc};
use relance_contracts::EventPayload;
use relance_storage::outbox::OutboxRecord;
use serde::Serialize;
use uuid::Uuid;

/// The `source` of what the tracker publishes.
pub const SOURCE: &str = "urn:relance:tracker";

/// The outbox record of an event or a task about a customer.
pub fn record<T: EventPayload + Serialize>(
    topic: &str,
    tenant: &str,
    customer_id: &str,
    id: Uuid,
    now: DateTime<Utc>,
    data: T,
) -> Option<OutboxRecord> {
    relance_events::customer_record(topic, SOURCE, tenant, customer_id, id, now, data)
}
