//! The ledger of applied events: how a redelivered event is recognised and skipped.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;

use crate::error::StorageError;

/// An event about to be applied.
#[derive(Debug, Clone)]
pub struct EventKey {
    pub source: String,
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    /// SHA-256 of what the event says (its data), to tell a redelivery from another event
    /// reusing the id.
    pub payload_sha256: Option<String>,
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
    events: &[&EventKey],
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
    let digests: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.payload_sha256.as_deref())
        .collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO processed_events (consumer, event_source, event_id, tenant, event_type,
                                       payload_sha256)
         SELECT $1, source, id, tenant, event_type, digest
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
              AS t(source, id, tenant, event_type, digest)
         ON CONFLICT DO NOTHING
         RETURNING event_source, event_id",
    )
    .bind(consumer)
    .bind(&sources)
    .bind(&ids)
    .bind(&tenants)
    .bind(&types)
    .bind(&digests)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recording processed events"))?;
    Ok(rows.into_iter().collect())
}

/// Among `events` already recorded by `consumer`, those recorded with another payload than
/// theirs: the same id reused for a different event. Returns `(source, id)` → the digest
/// recorded first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn conflicting_payloads(
    connection: &mut PgConnection,
    consumer: &str,
    events: &[&EventKey],
) -> Result<HashMap<(String, String), String>, StorageError> {
    let known: Vec<&EventKey> = events
        .iter()
        .copied()
        .filter(|event| event.payload_sha256.is_some())
        .collect();
    if known.is_empty() {
        return Ok(HashMap::new());
    }
    let sources: Vec<&str> = known.iter().map(|event| event.source.as_str()).collect();
    let ids: Vec<&str> = known.iter().map(|event| event.id.as_str()).collect();
    let digests: Vec<&str> = known
        .iter()
        .filter_map(|event| event.payload_sha256.as_deref())
        .collect();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT p.event_source, p.event_id, p.payload_sha256
         FROM processed_events p
         JOIN UNNEST($2::text[], $3::text[], $4::text[]) AS t(source, id, digest)
           ON p.event_source = t.source AND p.event_id = t.id
         WHERE p.consumer = $1 AND p.payload_sha256 IS NOT NULL AND p.payload_sha256 <> t.digest",
    )
    .bind(consumer)
    .bind(&sources)
    .bind(&ids)
    .bind(&digests)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("comparing redelivered events"))?;
    Ok(rows
        .into_iter()
        .map(|(source, id, digest)| ((source, id), digest))
        .collect())
}

/// Forgets that `consumer` processed these events (the domain refused them): once the cause is
/// fixed, a replay of their dead letters applies them.
///
/// # Errors
/// [`StorageError::Query`] when the delete fails.
pub async fn forget(
    connection: &mut PgConnection,
    consumer: &str,
    events: &[(String, String)],
) -> Result<(), StorageError> {
    if events.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = events.iter().map(|event| event.0.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|event| event.1.as_str()).collect();
    sqlx::query(
        "DELETE FROM processed_events p USING UNNEST($2::text[], $3::text[]) AS t(source, id)
         WHERE p.consumer = $1 AND p.event_source = t.source AND p.event_id = t.id",
    )
    .bind(consumer)
    .bind(&sources)
    .bind(&ids)
    .execute(connection)
    .await
    .map_err(StorageError::query("forgetting refused events"))?;
    Ok(())
}
