//! The tracker's records for the outbox: dunning events and tasks.

use chrono::{DateTime, Utc};
use relance_contracts::{Envelope, EventPayload, Id};
use relance_events::cloudevent_headers;
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
    let envelope = Envelope::new(
        Id::parse(id.to_string()).ok()?,
        SOURCE,
        Id::parse(tenant).ok()?,
        now,
        customer_id.to_string(),
        data,
    );
    let payload = envelope.to_json_bytes().ok()?;
    Some(OutboxRecord {
        topic: topic.to_string(),
        key: Some(customer_id.as_bytes().to_vec()),
        payload,
        headers: cloudevent_headers(&envelope.event_type, envelope.id.as_str(), tenant),
        ..OutboxRecord::default()
    })
}
