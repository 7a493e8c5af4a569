//! The transactional outbox: records to publish are written in the transaction of the change
//! they report, and a relay publishes them afterwards, in order.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::error::StorageError;

/// Kafka headers: names and optional byte values, in order.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A row of the outbox as read back: id, topic, key, payload, headers.
type PendingRow = (i64, String, Option<Vec<u8>>, Vec<u8>, String);

/// A Kafka record waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Headers,
    /// Invoices whose payment, void, credit or dispute cancels this record while unpublished.
    pub cancel_keys: Vec<String>,
    /// The reminder this record is the command of.
    pub reminder_id: Option<uuid::Uuid>,
    /// For a dead letter: the whole original, kept in `dead_letters` in the same transaction.
    pub dead_letter: Option<Box<StoredDeadLetter>>,
}

/// A dead letter in full, as `dead_letters` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredDeadLetter {
    pub service: String,
    pub reason: String,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub tenant: Option<String>,
    pub original_key: Option<Vec<u8>>,
    pub original_payload: Option<Vec<u8>>,
    pub original_headers: Headers,
    pub original_sha256: String,
    /// The copy on the topic was cut to fit the broker's size limit.
    pub truncated: bool,
}

/// A header as the `headers` column keeps it (JSON).
#[derive(Deserialize)]
struct StoredHeader {
    key: String,
    /// Base64, so headers of any bytes survive JSON.
    value: Option<String>,
}

/// [`StoredHeader`] as written, borrowing the name.
#[derive(Serialize)]
struct StoredHeaderRef<'a> {
    key: &'a str,
    value: Option<String>,
}

/// The headers as JSON text, bound as `text[]` and cast to `jsonb` by the statement: a
/// `serde_json::Value` tree between would be built and serialised again for every record.
fn headers_to_json(headers: &[(String, Option<Vec<u8>>)]) -> String {
    let stored: Vec<StoredHeaderRef<'_>> = headers
        .iter()
        .map(|(key, value)| StoredHeaderRef {
            key,
            value: value
                .as_ref()
                .map(|value| base64::engine::general_purpose::STANDARD.encode(value)),
        })
        .collect();
    // Serialising names and strings cannot fail.
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_string())
}

/// Headers from the JSON text of a `headers` column (selected as `headers::text`).
pub(crate) fn headers_from_json(id: i64, json: &str) -> Result<Headers, StorageError> {
    let stored: Vec<StoredHeader> =
        serde_json::from_str(json).map_err(|source| StorageError::Corrupt {
            what: "outbox headers",
            id: id.to_string(),
            source,
        })?;
    stored
        .into_iter()
        .map(|header| {
            let value = match header.value {
                Some(encoded) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|error| StorageError::Corrupt {
                            what: "outbox header value",
                            id: id.to_string(),
                            source: serde::de::Error::custom(error),
                        })?,
                ),
                None => None,
            };
            Ok((header.key, value))
        })
        .collect()
}

/// Adds records to the outbox, in one statement; they are published in this order.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn enqueue(
    connection: &mut PgConnection,
    records: &[OutboxRecord],
) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = records.iter().map(|record| record.topic.as_str()).collect();
    let keys: Vec<Option<&[u8]>> = records.iter().map(|record| record.key.as_deref()).collect();
    let payloads: Vec<&[u8]> = records
        .iter()
        .map(|record| record.payload.as_slice())
        .collect();
    let headers: Vec<String> = records
        .iter()
        .map(|record| headers_to_json(&record.headers))
        .collect();
    // Arrays of arrays of different lengths cannot be bound: the keys travel as JSON.
    let cancel_keys: Vec<Option<serde_json::Value>> = records
        .iter()
        .map(|record| {
            (!record.cancel_keys.is_empty()).then(|| serde_json::json!(record.cancel_keys))
        })
        .collect();
    let reminder_ids: Vec<Option<uuid::Uuid>> =
        records.iter().map(|record| record.reminder_id).collect();
    sqlx::query(
        "INSERT INTO outbox (topic, message_key, payload, headers, cancel_keys, reminder_id)
         SELECT topic, message_key, payload, headers,
                CASE WHEN cancel_keys IS NULL THEN NULL
                     ELSE ARRAY(SELECT jsonb_array_elements_text(cancel_keys)) END,
                reminder_id
         FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::text[]::jsonb[], $5::jsonb[], $6::uuid[])
              WITH ORDINALITY AS t(topic, message_key, payload, headers, cancel_keys, reminder_id, position)
         ORDER BY position",
    )
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&headers)
    .bind(&cancel_keys)
    .bind(&reminder_ids)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("enqueueing outbox records"))?;
    let dead: Vec<&StoredDeadLetter> = records
        .iter()
        .filter_map(|record| record.dead_letter.as_deref())
        .collect();
    keep_dead_letters(connection, &dead).await
}

/// Keeps dead letters in full.
async fn keep_dead_letters(
    connection: &mut PgConnection,
    dead: &[&StoredDeadLetter],
) -> Result<(), StorageError> {
    if dead.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&StoredDeadLetter) -> String| dead.iter().map(|d| f(d)).collect::<Vec<_>>();
    let optional =
        |f: fn(&StoredDeadLetter) -> Option<String>| dead.iter().map(|d| f(d)).collect::<Vec<_>>();
    let partitions: Vec<i32> = dead.iter().map(|d| d.source_partition).collect();
    let offsets: Vec<i64> = dead.iter().map(|d| d.source_offset).collect();
    let keys: Vec<Option<&[u8]>> = dead.iter().map(|d| d.original_key.as_deref()).collect();
    let payloads: Vec<Option<&[u8]>> = dead.iter().map(|d| d.original_payload.as_deref()).collect();
    let headers: Vec<String> = dead
        .iter()
        .map(|d| headers_to_json(&d.original_headers))
        .collect();
    let truncated: Vec<bool> = dead.iter().map(|d| d.truncated).collect();
    sqlx::query(
        "INSERT INTO dead_letters (service, reason, detail, source_topic, source_partition,
             source_offset, event_id, event_type, tenant, original_key, original_payload,
             original_headers, original_sha256, truncated)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
             $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[],
             $12::text[]::jsonb[], $13::text[], $14::bool[])",
    )
    .bind(text(|d| d.service.clone()))
    .bind(text(|d| d.reason.clone()))
    .bind(text(|d| d.detail.clone()))
    .bind(text(|d| d.source_topic.clone()))
    .bind(&partitions)
    .bind(&offsets)
    .bind(optional(|d| d.event_id.clone()))
    .bind(optional(|d| d.event_type.clone()))
    .bind(optional(|d| d.tenant.clone()))
    .bind(&keys)
    .bind(&payloads)
    .bind(&headers)
    .bind(text(|d| d.original_sha256.clone()))
    .bind(&truncated)
    .execute(connection)
    .await
    .map_err(StorageError::query("keeping dead letters"))?;
    Ok(())
}

/// A record claimed for publication.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    pub id: i64,
    pub record: OutboxRecord,
}

/// Claims up to `limit` unpublished records of `producer` (the application name of the
/// service that wrote them), oldest first, if no other relay of that service holds its relay
/// lock (then returns nothing). The lock lasts as long as `transaction`; no row is locked, so
/// cancelling a queued command never waits for a publication in flight (a command cancelled
/// meanwhile still leaves: the sender's guard skips it as `reminder_cancelled`). Held records
/// ([`hold_topic`], [`maintain_holds`]) are not claimed, and not read either: a topic the
/// broker says is missing never crowds out the others, however many records it holds back.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored record is unreadable.
pub async fn claim_pending(
    connection: &mut PgConnection,
    producer: &str,
    limit: i64,
) -> Result<Vec<PendingRecord>, StorageError> {
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('relance-outbox-relay:' || $1, 0))",
    )
    .bind(producer)
    .fetch_one(&mut *connection)
    .await
    .map_err(StorageError::query("taking the outbox relay lock"))?;
    if !locked {
        return Ok(Vec::new());
    }
    // One ordered range of the partial index `outbox_unpublished (producer, id)` for each
    // producer value, merged: with the two in one `OR`, PostgreSQL read and sorted every
    // pending record of the producer on every claim (29 % of the database's time while the
    // scheduler queued 100,000 commands, make bench).
    let rows: Vec<PendingRow> = sqlx::query_as(
        "(SELECT id, topic, message_key, payload, headers::text FROM outbox
          WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
            AND producer = $1
          ORDER BY id LIMIT $2)
         UNION ALL
         (SELECT id, topic, message_key, payload, headers::text FROM outbox
          WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
            AND producer IS NULL
          ORDER BY id LIMIT $2)
         ORDER BY id LIMIT $2",
    )
    .bind(producer)
    .bind(limit)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query("reading pending outbox records"))?;
    rows.into_iter()
        .map(|(id, topic, key, payload, headers)| {
            Ok(PendingRecord {
                id,
                record: OutboxRecord {
                    topic,
                    key,
                    payload,
                    headers: headers_from_json(id, &headers)?,
                    ..OutboxRecord::default()
                },
            })
        })
        .collect()
}

/// Marks records as published.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn mark_published(
    connection: &mut PgConnection,
    ids: &[i64],
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(connection)
    .await
    .map_err(StorageError::query("marking outbox records published"))?;
    Ok(())
}

/// Deletes records just published, for a relay that keeps none (`outbox.retention_hours = 0`):
/// one row deletion instead of rewriting the row (payload included) and deleting it later.
///
/// # Errors
/// [`StorageError::Query`] when the delete fails.
pub async fn delete_published(
    connection: &mut PgConnection,
    ids: &[i64],
) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(connection)
        .await
        .map_err(StorageError::query("deleting published outbox records"))?;
    Ok(())
}

/// Records a failed publication attempt of a record; `terminal` when the broker will never
/// accept it (the record is then never retried).
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn record_failure(
    pool: &PgPool,
    id: i64,
    error: &str,
    terminal: bool,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                           failed_at = CASE WHEN $3 THEN now() ELSE NULL END
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(terminal)
    .execute(pool)
    .await
    .map_err(StorageError::query("recording an outbox failure"))?;
    Ok(())
}

/// Holds every pending record of `producer` for `topic` for `hold_seconds` (the broker said the
/// topic is missing or not writable): they leave the claim's index. `attempted` (the records
/// just tried) also get an attempt and `error`. The database's clock times the hold, so every
/// replica's relay reads it alike.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn hold_topic(
    pool: &PgPool,
    producer: &str,
    topic: &str,
    hold_seconds: f64,
    attempted: &[i64],
    error: &str,
) -> Result<u64, StorageError> {
    sqlx::query(
        "UPDATE outbox SET held_until = now() + make_interval(secs => $3),
                attempts = attempts + (id = ANY($4))::int,
                last_error = CASE WHEN id = ANY($4) THEN $5 ELSE last_error END
         WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
           AND (producer = $1 OR producer IS NULL) AND topic = $2",
    )
    .bind(producer)
    .bind(topic)
    .bind(hold_seconds)
    .bind(attempted)
    .bind(error)
    .execute(pool)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query("holding an outbox topic"))
}

/// Before a claim: releases the held records of `producer` of every topic one of whose holds
/// has ended, all of the topic at once so they are claimed again oldest first (returns those
/// topics), and holds with the others the records written since for a topic still held, so
/// that none of them goes out before the older ones.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn maintain_holds(pool: &PgPool, producer: &str) -> Result<Vec<String>, StorageError> {
    let released: Vec<String> = sqlx::query_scalar(
        "WITH ended AS (
             SELECT DISTINCT topic FROM outbox
             WHERE held_until IS NOT NULL AND held_until <= now()
               AND (producer = $1 OR producer IS NULL)
         ), released AS (
             UPDATE outbox SET held_until = NULL
             WHERE held_until IS NOT NULL AND (producer = $1 OR producer IS NULL)
               AND topic IN (SELECT topic FROM ended)
             RETURNING topic
         )
         SELECT DISTINCT topic FROM released",
    )
    .bind(producer)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("releasing held outbox topics"))?;
    sqlx::query(
        "UPDATE outbox o SET held_until = h.until
         FROM (SELECT topic, max(held_until) AS until FROM outbox
               WHERE held_until IS NOT NULL AND (producer = $1 OR producer IS NULL)
               GROUP BY topic) AS h
         WHERE o.topic = h.topic AND o.published_at IS NULL AND o.failed_at IS NULL
           AND o.held_until IS NULL AND (o.producer = $1 OR o.producer IS NULL)",
    )
    .bind(producer)
    .execute(pool)
    .await
    .map_err(StorageError::query(
        "holding new records of held outbox topics",
    ))?;
    Ok(released)
}

/// Deletes published records older than `retention_hours`; returns how many.
///
/// # Errors
/// [`StorageError::Query`] when the delete fails.
pub async fn purge_published(pool: &PgPool, retention_hours: i64) -> Result<u64, StorageError> {
    sqlx::query("DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1::int)")
        .bind(retention_hours)
        .execute(pool)
        .await
        .map(|result| result.rows_affected())
        .map_err(StorageError::query("purging published outbox records"))
}

/// How many records of `producer` wait to be published.
///
/// # Errors
/// [`StorageError::Query`] when the count fails.
pub async fn pending_count(pool: &PgPool, producer: &str) -> Result<i64, StorageError> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox
                 WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
                   AND (producer = $1 OR producer IS NULL))
              + (SELECT count(*) FROM outbox
                 WHERE held_until IS NOT NULL AND (producer = $1 OR producer IS NULL))",
    )
    .bind(producer)
    .fetch_one(pool)
    .await
    .map_err(StorageError::query("counting pending outbox records"))
}

/// How an outbox record names an invoice it is about ([`OutboxRecord::cancel_keys`]): tenant and
/// invoice id, which never contain a space.
#[must_use]
pub fn cancel_key(tenant: &str, invoice_id: &str) -> String {
    format!("{tenant} {invoice_id}")
}

/// Deletes the unpublished records about any of the invoices `keys` (queued reminders and
/// tasks) and returns the reminders they were the commands of. Call it in the transaction that records
/// the payment, void, credit or dispute. A relay may have published a record it deletes and
/// not yet marked it (relays hold no row lock, so that cancelling never waits for a broker):
/// `scheduling::cancel_reminders` then keeps a reminder whose message may have left, and the
/// sender's guard skips a cancelled one that arrives.
///
/// # Errors
/// [`StorageError::Query`] when the delete fails.
pub async fn cancel_pending_for_invoices(
    connection: &mut PgConnection,
    keys: &[crate::Scoped],
) -> Result<Vec<uuid::Uuid>, StorageError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let cancel_keys: Vec<String> = keys
        .iter()
        .map(|(tenant, invoice_id)| cancel_key(tenant, invoice_id))
        .collect();
    let cancelled: Vec<Option<uuid::Uuid>> = sqlx::query_scalar(
        "DELETE FROM outbox WHERE published_at IS NULL AND cancel_keys && $1 RETURNING reminder_id",
    )
    .bind(&cancel_keys)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("cancelling queued commands"))?;
    Ok(cancelled.into_iter().flatten().collect())
}
