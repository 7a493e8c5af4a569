//! Retention: what relance keeps about people and messages, and for how long. Deliveries (the
//! audit of every message: recipient, subject, provider answers), interactions (opens and
//! clicks, with user agents), processed event ids and dead letters (whole records, which may
//! hold contact data) are deleted once older than their period. Invoices, customers,
//! reminders and manual actions are not: they are the state of dunning and its audit, and end
//! with the customer's erasure (`customers::erase`) or the tenant's own retention of invoices.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StorageError;

/// How many days each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPeriods {
    pub deliveries_days: u32,
    pub interactions_days: u32,
    pub processed_events_days: u32,
    pub dead_letters_days: u32,
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub deliveries: u64,
    pub delivery_attempts: u64,
    pub interactions: u64,
    pub processed_events: u64,
    pub dead_letters: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.deliveries
            + self.delivery_attempts
            + self.interactions
            + self.processed_events
            + self.dead_letters
    }
}

/// Deletes, in batches of at most `batch` rows per table, what is older than its period, as
/// of `now` (the service's clock) but never later than the database's own time: some rows are
/// stamped by the database, and a simulated clock running ahead must not age them.
/// Finished deliveries only: a delivery still pending or in flight is kept whatever its age.
///
/// # Errors
/// [`StorageError::Query`] when a delete fails.
pub async fn purge(
    pool: &PgPool,
    periods: &RetentionPeriods,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<Purged, StorageError> {
    let mut purged = Purged::default();
    let mut transaction = pool.begin().await.map_err(StorageError::Unreachable)?;
    let old_deliveries: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT delivery_id FROM deliveries
         WHERE status IN ('sent', 'skipped', 'failed', 'unknown')
           AND coalesce(finished_at, updated_at) < LEAST($3, now()) - make_interval(days => $1)
         ORDER BY coalesce(finished_at, updated_at) LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(i32::try_from(periods.deliveries_days).unwrap_or(i32::MAX))
    .bind(batch)
    .bind(now)
    .fetch_all(&mut *transaction)
    .await
    .map_err(StorageError::query("choosing old deliveries"))?;
    purged.delivery_attempts =
        sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id = ANY($1)")
            .bind(&old_deliveries)
            .execute(&mut *transaction)
            .await
            .map_err(StorageError::query("deleting old delivery attempts"))?
            .rows_affected();
    purged.deliveries = sqlx::query("DELETE FROM deliveries WHERE delivery_id = ANY($1)")
        .bind(&old_deliveries)
        .execute(&mut *transaction)
        .await
        .map_err(StorageError::query("deleting old deliveries"))?
        .rows_affected();
    transaction
        .commit()
        .await
        .map_err(StorageError::Unreachable)?;
    purged.interactions = delete_older(
        pool,
        "interactions",
        "id",
        "occurred_at",
        periods.interactions_days,
        now,
        batch,
    )
    .await?;
    purged.processed_events = sqlx::query(
        "DELETE FROM processed_events WHERE (consumer, event_source, event_id) IN (
             SELECT consumer, event_source, event_id FROM processed_events
             WHERE processed_at < LEAST($3, now()) - make_interval(days => $1) LIMIT $2)",
    )
    .bind(i32::try_from(periods.processed_events_days).unwrap_or(i32::MAX))
    .bind(batch)
    .bind(now)
    .execute(pool)
    .await
    .map_err(StorageError::query("deleting old processed event ids"))?
    .rows_affected();
    purged.dead_letters = delete_older(
        pool,
        "dead_letters",
        "id",
        "failed_at",
        periods.dead_letters_days,
        now,
        batch,
    )
    .await?;
    Ok(purged)
}

async fn delete_older(
    pool: &PgPool,
    table: &'static str,
    key: &'static str,
    at: &'static str,
    days: u32,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StorageError> {
    sqlx::query(&format!(
        "DELETE FROM {table} WHERE {key} IN (
             SELECT {key} FROM {table} WHERE {at} < LEAST($3, now()) - make_interval(days => $1) LIMIT $2)"
    ))
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .bind(batch)
    .bind(now)
    .execute(pool)
    .await
    .map_err(StorageError::query("deleting old rows"))
    .map(|result| result.rows_affected())
}
