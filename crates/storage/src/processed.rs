//! The ledger of applied events: how a redelivered event is recognised and skipped.

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::error::StorageError;

/// An event about to be applied.
#[derive(Debug, Clone)]
pub struct EventKey {
    pub source: String,
    pub id: String,
    pub tenant: String,
    pub event_type: String,
}

/// Records `events` as applied by `consumer`, in one statement, and returns the `(source, id)`
/// of those not recorded before. Call it in the transaction that applies them: if that
/// transaction rolls back, so does the record.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn record_new_events(
    connection: &mut PgConnection,
    consumer: &str,
    events: &[EventKey],
) -> Result<HashSet<(String, String)>, StorageError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let sources: Vec<&str> = events.iter().map(|event| event.source.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    let tenants: Vec<&str> = events.iter().map(|event| event.tenant.as_str()).collect();
    let types: Vec<&str> = events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO processed_events (consumer, event_source, event_id, tenant, event_type)
         SELECT $1, source, id, tenant, event_type
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[]) AS t(source, id, tenant, event_type)
         ON CONFLICT DO NOTHING
         RETURNING event_source, event_id",
    )
    .bind(consumer)
    .bind(&sources)
    .bind(&ids)
    .bind(&tenants)
    .bind(&types)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recording processed events"))?;
    Ok(rows.into_iter().collect())
}
