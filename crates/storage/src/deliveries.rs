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
    /// When the attempt whose outcome is unknown began: the provider must be asked before
    /// anything is sent again. `None`: nothing is in doubt.
    pub sending_since: Option<DateTime<Utc>>,
    /// The provider of the last attempt.
    pub provider: Option<String>,
    pub command: serde_json::Value,
    pub source: serde_json::Value,
    /// This claim's fencing token: every later write carries it.
    pub claim_token: Uuid,
}

/// Which provider delivers a tenant's reminders of a channel: the default identity's, unless
/// the tenant has its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub default_email: String,
    pub default_sms: String,
    /// `(tenant, email provider, sms provider)` of tenants with their own, one entry a tenant
    /// (of two, the first counts).
    pub tenants: Vec<(String, String, String)>,
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// Only deliveries routed to this provider.
    pub provider: &'a str,
    pub routes: &'a Routes,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub limit: i64,
    pub token: Uuid,
}

/// Claims up to `limit` deliveries routed to one provider and due at `now`, until
/// `lease_until`, under a new fencing token. A delivery still in flight past its lease belongs
/// to a dispatcher that stopped or stalled; if it had begun an attempt (`sending_since`), the
/// new claim reconciles it.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn claim_due(
    pool: &PgPool,
    claim: &Claim<'_>,
) -> Result<Vec<ClaimedDelivery>, StorageError> {
    let routes = claim.routes;
    let tenants: Vec<&str> = routes
        .tenants
        .iter()
        .map(|route| route.0.as_str())
        .collect();
    let email: Vec<&str> = routes
        .tenants
        .iter()
        .map(|route| route.1.as_str())
        .collect();
    let sms: Vec<&str> = routes
        .tenants
        .iter()
        .map(|route| route.2.as_str())
        .collect();
    sqlx::query_as(
        // The route is looked up per delivery, not joined: joined, PostgreSQL estimated
        // that few due deliveries match it and read and sorted every due one to take the
        // first `limit`, on every claim (a backlog after a provider outage, or the morning's
        // reminders, was read again and again); filtered, it walks `deliveries_due` in order
        // and stops at `limit`.
        "WITH due AS (
             SELECT d.delivery_id FROM deliveries d
             WHERE d.status IN ('pending', 'in_flight') AND d.next_attempt_at <= $1
               AND CASE d.channel
                       WHEN 'email' THEN coalesce(
                           (SELECT r.email FROM unnest($5::text[], $6::text[]) AS r(tenant, email)
                            WHERE r.tenant = d.tenant LIMIT 1), $8)
                       ELSE coalesce(
                           (SELECT r.sms FROM unnest($5::text[], $7::text[]) AS r(tenant, sms)
                            WHERE r.tenant = d.tenant LIMIT 1), $9)
                   END = $4
             ORDER BY d.next_attempt_at
             LIMIT $3
             FOR UPDATE OF d SKIP LOCKED)
         UPDATE deliveries d
         SET status = 'in_flight', next_attempt_at = $2, claim_token = $10, updated_at = $1
         FROM due WHERE d.delivery_id = due.delivery_id
         RETURNING d.delivery_id, d.idempotency_key, d.reminder_id, d.tenant, d.customer_id,
                   d.invoice_ids, d.channel, d.segment, d.step_id, d.template, d.variant,
                   d.attempts, d.sending_since, d.provider, d.command, d.source, d.claim_token",
    )
    .bind(claim.now)
    .bind(claim.lease_until)
    .bind(claim.limit)
    .bind(claim.provider)
    .bind(&tenants)
    .bind(&email)
    .bind(&sms)
    .bind(&routes.default_email)
    .bind(&routes.default_sms)
    .bind(claim.token)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("claiming due deliveries"))
}

/// Hands claimed deliveries back, due at `next_attempt_at`, without spending an attempt (an
/// open circuit, a lease too short for another wave). Fenced: deliveries claimed again since
/// are left alone.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn release(
    connection: &mut PgConnection,
    delivery_ids: &[Uuid],
    token: Uuid,
    next_attempt_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<u64, StorageError> {
    if delivery_ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $4
         WHERE delivery_id = ANY($1) AND claim_token = $2 AND status = 'in_flight'",
    )
    .bind(delivery_ids)
    .bind(token)
    .bind(next_attempt_at)
    .bind(at)
    .execute(connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query("handing deliveries back"))
}

/// Hands back deliveries whose attempt this holder began ([`begin_attempts`]) and then did not
/// make (its lease ran short before the call): nothing reached the provider, so the attempt is
/// withdrawn (`sending_since` cleared, the count back, the attempt row finished as
/// `withdrawn`) and the next holder sends without asking the provider. Asking could not tell
/// for a provider that cannot be searched, and the reminder would go to a person for nothing.
/// Fenced by `token`; returns how many were withdrawn.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn withdraw_attempts(
    connection: &mut PgConnection,
    delivery_ids: &[Uuid],
    token: Uuid,
    next_attempt_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<u64, StorageError> {
    if delivery_ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "WITH withdrawn AS (
             UPDATE deliveries SET status = 'pending', sending_since = NULL,
                                   attempts = attempts - 1, next_attempt_at = $3, updated_at = $4
             WHERE delivery_id = ANY($1) AND claim_token = $2 AND status = 'in_flight'
               AND sending_since IS NOT NULL
             RETURNING delivery_id, attempts + 1 AS attempt)
         UPDATE delivery_attempts a
         SET finished_at = $4, outcome = 'withdrawn',
             message = 'handed back unsent: the lease ran short before the call'
         FROM withdrawn w
         WHERE a.delivery_id = w.delivery_id AND a.attempt = w.attempt AND a.finished_at IS NULL",
    )
    .bind(delivery_ids)
    .bind(token)
    .bind(next_attempt_at)
    .bind(at)
    .execute(connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query("withdrawing attempts not made"))
}

/// Records that attempts are about to be made through `provider`, in the transaction whose
/// guard let them through: the attempt count goes up, `sending_since` is set and an attempt row
/// is written. Fenced: returns the deliveries still held under `token`; only those may be sent.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn begin_attempts(
    connection: &mut PgConnection,
    delivery_ids: &[Uuid],
    token: Uuid,
    provider: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Uuid>, StorageError> {
    if delivery_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "WITH started AS (
             UPDATE deliveries SET attempts = attempts + 1, provider = $2, sending_since = $3,
                                   updated_at = $3
             WHERE delivery_id = ANY($1) AND claim_token = $4 AND status = 'in_flight'
             RETURNING delivery_id, attempts),
         recorded AS (
             INSERT INTO delivery_attempts (delivery_id, attempt, started_at, provider)
             SELECT delivery_id, attempts, $3, $2 FROM started)
         SELECT delivery_id FROM started",
    )
    .bind(delivery_ids)
    .bind(provider)
    .bind(at)
    .bind(token)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recording attempts"))
}

/// How a delivery ends, or why it waits again.
#[derive(Debug, Clone, Default)]
pub struct DeliveryUpdate {
    pub delivery_id: Uuid,
    /// The claim this update belongs to: the update applies only while it holds.
    pub claim_token: Uuid,
    /// `pending` (try again at `next_attempt_at`), `sent`, `skipped`, `failed` or `unknown`.
    pub status: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The attempt's outcome stays in doubt: the provider is asked before anything is sent
    /// again (`sending_since` is kept).
    pub in_doubt: bool,
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

/// Applies an update and closes the delivery's open attempt row with its outcome. Fenced:
/// returns `false`, changing nothing, when the delivery was claimed again since (its lease
/// ran out), so a stale dispatcher can never overwrite what the new holder recorded.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn apply_update(
    connection: &mut PgConnection,
    update: &DeliveryUpdate,
) -> Result<bool, StorageError> {
    let finished = !matches!(update.status, "pending");
    let applied = sqlx::query(
        "UPDATE deliveries SET
             status = $2,
             next_attempt_at = $3,
             sending_since = CASE WHEN $4 THEN sending_since ELSE NULL END,
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
         WHERE delivery_id = $1 AND claim_token = $16 AND status = 'in_flight'",
    )
    .bind(update.delivery_id)
    .bind(update.status)
    .bind(update.next_attempt_at)
    .bind(update.in_doubt)
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
    .bind(update.claim_token)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("updating a delivery"))?
    .rows_affected()
        > 0;
    if !applied {
        return Ok(false);
    }
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
    Ok(true)
}

/// Serialises guards per customer for the rest of `transaction`: two dispatchers deciding
/// reminders to one customer take turns, so the frequency cap counts what the other let
/// through. Locks are taken in one order (the key's hash) so they never deadlock; customers are
/// locked before invoices everywhere (docs/operations.md).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn lock_customers_for_guard(
    connection: &mut PgConnection,
    customers: &[(String, String)],
) -> Result<(), StorageError> {
    if customers.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = customers.iter().map(|key| key.0.as_str()).collect();
    let ids: Vec<&str> = customers.iter().map(|key| key.1.as_str()).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended('relance-guard:' || t || ':' || c, 0) AS k
             FROM unnest($1::text[], $2::text[]) AS u(t, c) ORDER BY k) AS keys",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(connection)
    .await
    .map_err(StorageError::query("locking customers for the guard"))?;
    Ok(())
}

/// A customer's hold and recent messages, as the database has them now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GuardCustomer {
    pub tenant: String,
    pub customer_id: String,
    pub held: bool,
    pub held_until: Option<NaiveDate>,
    /// Messages sent to the customer since the start of the frequency-cap window, and
    /// attempts whose outcome is unknown (they may have reached the customer).
    pub sent_recently: i64,
    /// When the oldest message still in the window was sent.
    pub oldest_recent: Option<DateTime<Utc>>,
}

/// Holds and recent message counts of these customers of `tenant`, their rows share-locked
/// for the rest of `transaction` (a hold committed meanwhile waits for it). Deliveries of
/// `deciding` (the wave being guarded) are not counted.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn guard_customers(
    connection: &mut PgConnection,
    customers: &[(String, String)],
    sent_since: DateTime<Utc>,
    deciding: &[Uuid],
) -> Result<Vec<GuardCustomer>, StorageError> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids) = crate::key_columns(customers);
    sqlx::query(
        "SELECT 1 FROM customers
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, customer_id FOR SHARE",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("locking customers for the guard"))?;
    sqlx::query_as(
        "SELECT ids.tenant, ids.customer_id, coalesce(c.held, false) AS held, c.held_until,
                (SELECT count(*) FROM deliveries d
                 WHERE d.customer_id = ids.customer_id AND d.tenant = ids.tenant
                   AND d.delivery_id <> ALL($4)
                   AND ((d.status = 'sent' AND d.sent_at >= $3) OR d.sending_since IS NOT NULL))
                 AS sent_recently,
                (SELECT min(coalesce(d.sent_at, d.sending_since)) FROM deliveries d
                 WHERE d.customer_id = ids.customer_id AND d.tenant = ids.tenant
                   AND d.delivery_id <> ALL($4)
                   AND ((d.status = 'sent' AND d.sent_at >= $3) OR d.sending_since IS NOT NULL))
                 AS oldest_recent
         FROM unnest($1::text[], $2::text[]) AS ids(tenant, customer_id)
         LEFT JOIN customers c ON c.tenant = ids.tenant AND c.customer_id = ids.customer_id",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(sent_since)
    .bind(deciding)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("reading customers for the guard"))
}

/// Suppressed addresses among these `(tenant, channel, address)`; addresses compared
/// lower-cased.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn suppressions(
    connection: &mut PgConnection,
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
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("reading suppressed addresses"))
}

/// A provider's shared token bucket as stored, with the database's time now (seconds since
/// the epoch), locked for the rest of `transaction`. A bucket seen for the first time starts
/// with `initial` tokens.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn lock_bucket(
    connection: &mut PgConnection,
    provider: &str,
    initial: f64,
) -> Result<(f64, f64, f64), StorageError> {
    sqlx::query(
        "INSERT INTO provider_buckets (provider, tokens, refilled_at)
         VALUES ($1, $2, clock_timestamp()) ON CONFLICT (provider) DO NOTHING",
    )
    .bind(provider)
    .bind(initial)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("creating a provider's bucket"))?;
    sqlx::query_as(
        "SELECT tokens, extract(epoch FROM refilled_at)::float8,
                extract(epoch FROM clock_timestamp())::float8
         FROM provider_buckets WHERE provider = $1 FOR UPDATE",
    )
    .bind(provider)
    .fetch_one(connection)
    .await
    .map_err(StorageError::query("reading a provider's bucket"))
}

/// Stores a provider's bucket.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn store_bucket(
    connection: &mut PgConnection,
    provider: &str,
    tokens: f64,
    at_seconds: f64,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE provider_buckets SET tokens = $2, refilled_at = to_timestamp($3)
         WHERE provider = $1",
    )
    .bind(provider)
    .bind(tokens)
    .bind(at_seconds)
    .execute(connection)
    .await
    .map_err(StorageError::query("storing a provider's bucket"))?;
    Ok(())
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
    pub received_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Every delivery of a reminder or of an invoice, oldest first (tests and the admin API).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn for_invoice(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<DeliveryRecord>, StorageError> {
    sqlx::query_as(
        "SELECT delivery_id, idempotency_key, reminder_id, tenant, customer_id, invoice_ids, channel,
                status, attempts, provider, provider_message_id, recipient, subject, body_sha256,
                skip_reason, error_class, error_code, error_message, sent_at, received_at,
                finished_at
         FROM deliveries WHERE invoice_ids @> ARRAY[$1::text] AND tenant = $2
         ORDER BY received_at, delivery_id",
    )
    .bind(invoice_id)
    .bind(tenant)
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
