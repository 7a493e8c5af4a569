//! Dead letters kept in full: what people list, and what they replay once the cause is fixed.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::StorageError;
use crate::outbox::{Headers, OutboxRecord};

/// Which dead letters: by id, by reason, by when they failed (all given filters apply).
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub ids: Vec<i64>,
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Leave out those already replayed.
    pub not_replayed: bool,
}

impl DeadLetterFilter {
    /// Whether the filter names anything (a replay of "everything" must be asked for).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.reason.is_none() && self.since.is_none() && self.until.is_none()
    }
}

/// A dead letter as listed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetterSummary {
    pub id: i64,
    pub service: String,
    pub reason: String,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub tenant: Option<String>,
    pub original_bytes: i32,
    pub original_sha256: String,
    pub truncated: bool,
    pub failed_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_count: i32,
}

const WHERE: &str = "(cardinality($1::bigint[]) = 0 OR id = ANY($1))
      AND ($2::text IS NULL OR reason = $2)
      AND ($3::timestamptz IS NULL OR failed_at >= $3)
      AND ($4::timestamptz IS NULL OR failed_at < $4)
      AND (NOT $5 OR replayed_at IS NULL)";

/// Dead letters matching `filter`, newest first, at most `limit`.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn list(
    pool: &PgPool,
    filter: &DeadLetterFilter,
    limit: i64,
) -> Result<Vec<DeadLetterSummary>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT id, service, reason, detail, source_topic, source_partition, source_offset,
                event_id, event_type, tenant, coalesce(length(original_payload), 0) AS original_bytes,
                original_sha256, truncated, failed_at, replayed_at, replay_count
         FROM dead_letters WHERE {WHERE} ORDER BY id DESC LIMIT $6"
    ))
    .bind(&filter.ids)
    .bind(&filter.reason)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.not_replayed)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("listing dead letters"))
}

type OriginalRow = (i64, String, Option<Vec<u8>>, Option<Vec<u8>>, String);

/// The originals of the dead letters matching `filter` (oldest first, at most `limit`), as
/// records to publish again to the topic they were read from, with a `relance_replay_of`
/// header; they are marked replayed in `connection`'s transaction.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored header is unreadable.
pub async fn take_for_replay(
    connection: &mut PgConnection,
    filter: &DeadLetterFilter,
    limit: i64,
) -> Result<Vec<(i64, OutboxRecord)>, StorageError> {
    let rows: Vec<OriginalRow> = sqlx::query_as(&format!(
        "UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1
         WHERE id IN (SELECT id FROM dead_letters WHERE {WHERE} ORDER BY id LIMIT $6 FOR UPDATE)
         RETURNING id, source_topic, original_key, original_payload, original_headers::text"
    ))
    .bind(&filter.ids)
    .bind(&filter.reason)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.not_replayed)
    .bind(limit)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("taking dead letters to replay"))?;
    let mut records = Vec::with_capacity(rows.len());
    for (id, topic, key, payload, headers) in rows {
        let mut headers: Headers = crate::outbox::headers_from_json(id, &headers)?;
        headers.retain(|(name, _)| name != "relance_replay_of");
        headers.push((
            "relance_replay_of".into(),
            Some(id.to_string().into_bytes()),
        ));
        records.push((
            id,
            OutboxRecord {
                topic,
                key,
                payload: payload.unwrap_or_default(),
                headers,
                ..OutboxRecord::default()
            },
        ));
    }
    records.sort_by_key(|(id, _)| *id);
    Ok(records)
}
