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

/// What a claim took: the records to publish, oldest first, and what it learnt of the
/// service's held topics.
#[derive(Debug, Default)]
pub struct Claim {
    pub records: Vec<PendingRecord>,
    /// Topics whose hold ended: their records were put back and are claimed again oldest first.
    pub released: Vec<String>,
    /// Every topic with a hold row, ended or not: a record of one of them published ends it
    /// for good ([`topics_accept`]).
    pub known_holds: Vec<String>,
}

/// At most this many claims in one: a claim that met records of a held topic holds them and
/// claims again past them, so a held topic's new records never take a round's place.
const CLAIMS_PAST_HELD: usize = 8;

/// Claims up to `limit` unpublished records of `producer` (the application name of the
/// service that wrote them), oldest first, if no other relay of that service holds its relay
/// lock (then returns nothing). The lock lasts as long as `transaction`; no row is locked, so
/// cancelling a queued command never waits for a publication in flight (a command cancelled
/// meanwhile still leaves: the sender's guard skips it as `reminder_cancelled`).
///
/// Under the lock it also keeps the service's topic holds ([`hold_topic`]): a topic whose hold
/// ended gets all its records back in the claim's index, and a record of a topic still held
/// that the claim meets (written since the hold began) is held with the others instead of
/// being returned. Held records are neither claimed nor read: a topic the broker says is
/// missing never crowds out the others, however many records it holds back.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored record is unreadable.
pub async fn claim_pending(
    connection: &mut PgConnection,
    producer: &str,
    limit: i64,
) -> Result<Claim, StorageError> {
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('relance-outbox-relay:' || $1, 0))",
    )
    .bind(producer)
    .fetch_one(&mut *connection)
    .await
    .map_err(StorageError::query("taking the outbox relay lock"))?;
    if !locked {
        return Ok(Claim::default());
    }
    let holds: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT topic, held_until > now(), released FROM outbox_topic_holds WHERE producer = $1",
    )
    .bind(producer)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query("reading the outbox's held topics"))?;
    if holds.is_empty() {
        let records = claim_after(connection, producer, 0, limit).await?;
        return Ok(Claim {
            records,
            ..Claim::default()
        });
    }
    let ended: Vec<String> = holds
        .iter()
        .filter(|(_, holding, released)| !holding && !released)
        .map(|(topic, _, _)| topic.clone())
        .collect();
    if !ended.is_empty() {
        release_topics(connection, producer, &ended).await?;
    }
    let holding: std::collections::HashSet<&str> = holds
        .iter()
        .filter(|(_, holding, _)| *holding)
        .map(|(topic, _, _)| topic.as_str())
        .collect();
    let mut records = Vec::new();
    let mut after = 0;
    for _ in 0..CLAIMS_PAST_HELD {
        let wanted = limit - i64::try_from(records.len()).unwrap_or(limit);
        if wanted <= 0 {
            break;
        }
        let claimed = claim_after(connection, producer, after, wanted).await?;
        let Some(last) = claimed.last() else { break };
        after = last.id;
        let (held, free): (Vec<PendingRecord>, Vec<PendingRecord>) = claimed
            .into_iter()
            .partition(|pending| holding.contains(pending.record.topic.as_str()));
        records.extend(free);
        if held.is_empty() {
            break;
        }
        let ids: Vec<i64> = held.iter().map(|pending| pending.id).collect();
        sqlx::query(
            "UPDATE outbox o SET held_until = h.held_until
             FROM outbox_topic_holds h
             WHERE o.id = ANY($2) AND h.producer = $1 AND h.topic = o.topic",
        )
        .bind(producer)
        .bind(&ids)
        .execute(&mut *connection)
        .await
        .map_err(StorageError::query(
            "holding new records of held outbox topics",
        ))?;
    }
    Ok(Claim {
        records,
        released: ended,
        known_holds: holds.into_iter().map(|(topic, _, _)| topic).collect(),
    })
}

/// Up to `limit` claimable records of `producer` after id `after`, oldest first.
async fn claim_after(
    connection: &mut PgConnection,
    producer: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<PendingRecord>, StorageError> {
    // One ordered range of the partial index `outbox_unpublished (producer, id)` for each
    // producer value, merged: with the two in one `OR`, PostgreSQL read and sorted every
    // pending record of the producer on every claim (29 % of the database's time while the
    // scheduler queued 100,000 commands, make bench).
    let rows: Vec<PendingRow> = sqlx::query_as(
        "(SELECT id, topic, message_key, payload, headers::text FROM outbox
          WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
            AND producer = $1 AND id > $3
          ORDER BY id LIMIT $2)
         UNION ALL
         (SELECT id, topic, message_key, payload, headers::text FROM outbox
          WHERE published_at IS NULL AND failed_at IS NULL AND held_until IS NULL
            AND producer IS NULL AND id > $3
          ORDER BY id LIMIT $2)
         ORDER BY id LIMIT $2",
    )
    .bind(producer)
    .bind(limit)
    .bind(after)
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

/// Puts every held record of `topics` back in the claim's index, all at once so that they are
/// claimed again oldest first, and marks the holds released.
async fn release_topics(
    connection: &mut PgConnection,
    producer: &str,
    topics: &[String],
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE outbox SET held_until = NULL
         WHERE held_until IS NOT NULL AND (producer = $1 OR producer IS NULL)
           AND topic = ANY($2)",
    )
    .bind(producer)
    .bind(topics)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("releasing held outbox topics"))?;
    sqlx::query(
        "UPDATE outbox_topic_holds SET released = true WHERE producer = $1 AND topic = ANY($2)",
    )
    .bind(producer)
    .bind(topics)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("releasing held outbox topics"))?;
    Ok(())
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

/// A topic's last hold, as the next one is decided from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastHold {
    /// How long it was, in seconds.
    pub seconds: f64,
    /// Seconds since it ended (negative while it lasts).
    pub ended_seconds_ago: f64,
}

/// The last hold of `producer`'s `topic` not yet ended by a publication, if any. Read under
/// the relay lock ([`claim_pending`]'s transaction), so no other relay of the service changes
/// it meanwhile.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn last_topic_hold(
    connection: &mut PgConnection,
    producer: &str,
    topic: &str,
) -> Result<Option<LastHold>, StorageError> {
    let row: Option<(f64, f64)> = sqlx::query_as(
        "SELECT hold_seconds, extract(epoch FROM now() - held_until)::float8
         FROM outbox_topic_holds WHERE producer = $1 AND topic = $2",
    )
    .bind(producer)
    .bind(topic)
    .fetch_optional(connection)
    .await
    .map_err(StorageError::query("reading an outbox topic's hold"))?;
    Ok(row.map(|(seconds, ended_seconds_ago)| LastHold {
        seconds,
        ended_seconds_ago,
    }))
}

/// Holds `producer`'s `topic` for `hold_seconds` (the broker said it is missing or not
/// writable): its hold row says so to every replica's relay, and every pending record of it
/// leaves the claim's index. `attempted` (the records just tried) also get an attempt and
/// `error`. The database's clock times the hold. Returns how many records it holds. Run it in
/// the claim's transaction, so that no other relay claims the topic in between.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn hold_topic(
    connection: &mut PgConnection,
    producer: &str,
    topic: &str,
    hold_seconds: f64,
    attempted: &[i64],
    error: &str,
) -> Result<u64, StorageError> {
    sqlx::query(
        "INSERT INTO outbox_topic_holds (producer, topic, held_until, hold_seconds)
         VALUES ($1, $2, now() + make_interval(secs => $3), $3)
         ON CONFLICT (producer, topic) DO UPDATE
         SET held_until = excluded.held_until, hold_seconds = excluded.hold_seconds,
             released = false",
    )
    .bind(producer)
    .bind(topic)
    .bind(hold_seconds)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("holding an outbox topic"))?;
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
    .execute(&mut *connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query("holding an outbox topic's records"))
}

/// Ends for good the holds of `producer`'s `topics`, to which a record was just published:
/// the next failure starts afresh. Returns the topics that had one.
///
/// # Errors
/// [`StorageError::Query`] when the delete fails.
pub async fn topics_accept(
    connection: &mut PgConnection,
    producer: &str,
    topics: &[&str],
) -> Result<Vec<String>, StorageError> {
    sqlx::query_scalar(
        "DELETE FROM outbox_topic_holds WHERE producer = $1 AND topic = ANY($2) RETURNING topic",
    )
    .bind(producer)
    .bind(topics)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("ending outbox topic holds"))
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
                 WHERE held_until IS NOT NULL AND published_at IS NULL AND failed_at IS NULL
                   AND (producer = $1 OR producer IS NULL))",
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
