//! The sender's deliveries: one per reminder command, claimed by the dispatcher when due, each
//! attempt recorded before the provider is called and its outcome after.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::StorageError;

/// A delivery to record for a newly received command.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: Uuid,
    pub idempotency_key: String,
    pub reminder_id: Uuid,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    pub channel: String,
    pub segment: String,
    pub step_id: String,
    pub template: String,
    pub variant: Option<String>,
    pub command: serde_json::Value,
    pub source: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// Records deliveries; those whose idempotency key is already known are left alone.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn insert_new(
    connection: &mut PgConnection,
    deliveries: &[NewDelivery],
) -> Result<Vec<String>, StorageError> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewDelivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.delivery_id).collect();
    let reminders: Vec<Uuid> = deliveries.iter().map(|d| d.reminder_id).collect();
    let invoice_ids: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| serde_json::json!(d.invoice_ids))
        .collect();
    let variants: Vec<Option<String>> = deliveries.iter().map(|d| d.variant.clone()).collect();
    let commands: Vec<serde_json::Value> = deliveries.iter().map(|d| d.command.clone()).collect();
    let sources: Vec<serde_json::Value> = deliveries.iter().map(|d| d.source.clone()).collect();
    let received: Vec<DateTime<Utc>> = deliveries.iter().map(|d| d.received_at).collect();
    sqlx::query_scalar(
        "INSERT INTO deliveries (delivery_id, idempotency_key, reminder_id, tenant, customer_id,
             invoice_ids, channel, segment, step_id, template, variant, status, next_attempt_at,
             command, source, received_at)
         SELECT id, key, reminder, tenant, customer,
                ARRAY(SELECT jsonb_array_elements_text(invoices)), channel, segment, step, template,
                variant, 'pending', received, command, source, received
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[],
                     $13::jsonb[], $14::timestamptz[])
              AS t(id, key, reminder, tenant, customer, invoices, channel, segment, step, template,
                   variant, command, source, received)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING idempotency_key",
    )
    .bind(&ids)
    .bind(column(|d| d.idempotency_key.clone()))
    .bind(&reminders)
    .bind(column(|d| d.tenant.clone()))
    .bind(column(|d| d.customer_id.clone()))
    .bind(&invoice_ids)
    .bind(column(|d| d.channel.clone()))
    .bind(column(|d| d.segment.clone()))
    .bind(column(|d| d.step_id.clone()))
    .bind(column(|d| d.template.clone()))
    .bind(&variants)
    .bind(&commands)
    .bind(&sources)
    .bind(&received)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recording deliveries"))
}

/// A delivery the dispatcher claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub delivery_id: Uuid,
    pub idempotency_key: String,
    pub reminder_id: Uuid,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    pub channel: String,
    pub segment: String,
    pub step_id: String,
    pub template: String,
    pub variant: Option<String>,
    pub attempts: i32,
    /// The previous attempt's outcome is unknown.
    pub reconcile: bool,
    pub provider: Option<String>,
    pub command: serde_json::Value,
    pub source: serde_json::Value,
}

/// Claims up to `limit` deliveries due at `now` until `lease_until`. A delivery still in flight
/// past its lease belongs to an attempt that never reported back (its sender died): it is
/// claimed for reconciliation.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ClaimedDelivery>, StorageError> {
    sqlx::query_as(
        "WITH due AS (
             SELECT delivery_id FROM deliveries
             WHERE status IN ('pending', 'in_flight') AND next_attempt_at <= $1
             ORDER BY next_attempt_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d
         SET reconcile = d.reconcile OR d.status = 'in_flight',
             status = 'in_flight', next_attempt_at = $2, updated_at = $1
         FROM due WHERE d.delivery_id = due.delivery_id
         RETURNING d.delivery_id, d.idempotency_key, d.reminder_id, d.tenant, d.customer_id,
                   d.invoice_ids, d.channel, d.segment, d.step_id, d.template, d.variant,
                   d.attempts, d.reconcile, d.provider, d.command, d.source",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("claiming due deliveries"))
}

/// Records that attempts are about to be made through `provider`: the attempt count goes up
/// and an attempt row is written, committed before the provider is called.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn begin_attempts(
    pool: &PgPool,
    delivery_ids: &[Uuid],
    provider: &str,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    let mut transaction = pool.begin().await.map_err(StorageError::Unreachable)?;
    sqlx::query(
        "WITH started AS (
             UPDATE deliveries SET attempts = attempts + 1, provider = $2, reconcile = false,
                                   updated_at = $3
             WHERE delivery_id = ANY($1) RETURNING delivery_id, attempts)
         INSERT INTO delivery_attempts (delivery_id, attempt, started_at, provider)
         SELECT delivery_id, attempts, $3, $2 FROM started",
    )
    .bind(delivery_ids)
    .bind(provider)
    .bind(at)
    .execute(&mut *transaction)
    .await
    .map_err(StorageError::query("recording attempts"))?;
    transaction
        .commit()
        .await
        .map_err(StorageError::query("committing attempts"))
}

/// How a delivery ends, or why it waits again.
#[derive(Debug, Clone, Default)]
pub struct DeliveryUpdate {
    pub delivery_id: Uuid,
    /// `pending` (try again at `next_attempt_at`), `sent`, `skipped`, `failed` or `unknown`.
    pub status: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub reconcile: bool,
    /// The attempt this update closes does not count against the limit (configuration errors,
    /// an open circuit).
    pub uncount_attempt: bool,
    pub provider_message_id: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub body_sha256: Option<String>,
    pub skip_reason: Option<String>,
    /// Outcome class of the attempt (`accepted`, `permanent`, `transient`, `ambiguous`,
    /// `config`), or `skipped`, `reconciled`.
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub at: DateTime<Utc>,
}

/// Applies an update and closes the delivery's open attempt row with its outcome.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn apply_update(
    connection: &mut PgConnection,
    update: &DeliveryUpdate,
) -> Result<(), StorageError> {
    let finished = !matches!(update.status, "pending");
    sqlx::query(
        "UPDATE deliveries SET
             status = $2,
             next_attempt_at = $3,
             reconcile = $4,
             attempts = CASE WHEN $5 THEN greatest(attempts - 1, 0) ELSE attempts END,
             provider_message_id = coalesce($6, provider_message_id),
             recipient = coalesce($7, recipient),
             subject = coalesce($8, subject),
             body_sha256 = coalesce($9, body_sha256),
             skip_reason = $10,
             error_class = CASE WHEN $11 IN ('accepted', 'skipped', 'reconciled') THEN NULL ELSE $11 END,
             error_code = $12,
             error_message = $13,
             sent_at = CASE WHEN $2 = 'sent' THEN coalesce(sent_at, $14) ELSE sent_at END,
             finished_at = CASE WHEN $15 THEN $14 ELSE NULL END,
             updated_at = $14
         WHERE delivery_id = $1",
    )
    .bind(update.delivery_id)
    .bind(update.status)
    .bind(update.next_attempt_at)
    .bind(update.reconcile)
    .bind(update.uncount_attempt)
    .bind(&update.provider_message_id)
    .bind(&update.recipient)
    .bind(&update.subject)
    .bind(&update.body_sha256)
    .bind(&update.skip_reason)
    .bind(&update.outcome)
    .bind(&update.error_code)
    .bind(&update.error_message)
    .bind(update.at)
    .bind(finished)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("updating a delivery"))?;
    sqlx::query(
        "UPDATE delivery_attempts SET finished_at = $2, outcome = $3, code = $4, message = $5,
                                      provider_message_id = $6
         WHERE id = (SELECT max(id) FROM delivery_attempts WHERE delivery_id = $1)
           AND finished_at IS NULL",
    )
    .bind(update.delivery_id)
    .bind(update.at)
    .bind(&update.outcome)
    .bind(&update.error_code)
    .bind(&update.error_message)
    .bind(&update.provider_message_id)
    .execute(connection)
    .await
    .map_err(StorageError::query("closing a delivery attempt"))?;
    Ok(())
}

/// A customer's hold, as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GuardCustomer {
    pub customer_id: String,
    pub held: bool,
    pub held_until: Option<NaiveDate>,
    /// Messages sent to the customer since the start of the frequency-cap window.
    pub sent_recently: i64,
}

/// Holds and recent message counts of these customers.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn guard_customers(
    pool: &PgPool,
    customer_ids: &[String],
    sent_since: DateTime<Utc>,
) -> Result<Vec<GuardCustomer>, StorageError> {
    sqlx::query_as(
        "SELECT ids.customer_id, coalesce(c.held, false) AS held, c.held_until,
                (SELECT count(*) FROM deliveries d
                 WHERE d.customer_id = ids.customer_id AND d.status = 'sent' AND d.sent_at >= $2)
                 AS sent_recently
         FROM unnest($1::text[]) AS ids(customer_id)
         LEFT JOIN customers c ON c.customer_id = ids.customer_id",
    )
    .bind(customer_ids)
    .bind(sent_since)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading customers for the guard"))
}

/// Suppressed addresses among these `(tenant, channel, address)`; addresses compared
/// lower-cased.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn suppressions(
    pool: &PgPool,
    keys: &[(String, String, String)],
) -> Result<Vec<(String, String, String, String)>, StorageError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<String> = keys.iter().map(|key| key.0.clone()).collect();
    let channels: Vec<String> = keys.iter().map(|key| key.1.clone()).collect();
    let addresses: Vec<String> = keys.iter().map(|key| key.2.to_lowercase()).collect();
    sqlx::query_as(
        "SELECT s.tenant, s.channel, s.address, s.reason
         FROM contact_suppressions s
         JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, channel, address)
           ON s.tenant = k.tenant AND s.channel = k.channel AND s.address = k.address",
    )
    .bind(&tenants)
    .bind(&channels)
    .bind(&addresses)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading suppressed addresses"))
}

/// Suppresses an address (kept if already suppressed).
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn suppress(
    connection: &mut PgConnection,
    tenant: &str,
    channel: &str,
    address: &str,
    reason: &str,
    source: &str,
    detail: Option<&str>,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO contact_suppressions (tenant, channel, address, reason, source, detail)
         VALUES ($1, $2, lower($3), $4, $5, $6)
         ON CONFLICT (tenant, channel, address) DO NOTHING",
    )
    .bind(tenant)
    .bind(channel)
    .bind(address)
    .bind(reason)
    .bind(source)
    .bind(detail)
    .execute(connection)
    .await
    .map_err(StorageError::query("suppressing an address"))?;
    Ok(())
}

/// A delivery as the audit trail shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub delivery_id: Uuid,
    pub idempotency_key: String,
    pub reminder_id: Uuid,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub body_sha256: Option<String>,
    pub skip_reason: Option<String>,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Every delivery of a reminder or of an invoice, oldest first (tests and the admin API).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn for_invoice(
    pool: &PgPool,
    invoice_id: &str,
) -> Result<Vec<DeliveryRecord>, StorageError> {
    sqlx::query_as(
        "SELECT delivery_id, idempotency_key, reminder_id, tenant, customer_id, invoice_ids, channel,
                status, attempts, provider, provider_message_id, recipient, subject, body_sha256,
                skip_reason, error_class, error_code, error_message, sent_at
         FROM deliveries WHERE $1 = ANY(invoice_ids) ORDER BY received_at, delivery_id",
    )
    .bind(invoice_id)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading deliveries"))
}

/// How many deliveries wait, by status (a gauge for operators).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn backlog(pool: &PgPool, now: DateTime<Utc>) -> Result<(i64, i64), StorageError> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= $1),
                count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > $1)
         FROM deliveries WHERE status = 'pending'",
    )
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(StorageError::query("counting waiting deliveries"))
}
