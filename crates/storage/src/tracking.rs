//! The tracker's tables: interactions (opens and clicks), customer actions, provider webhook
//! events, and payments attributed to reminders; and what it reads of deliveries.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::StorageError;

/// A sent reminder, as the tracker needs it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TrackedDelivery {
    pub delivery_id: Uuid,
    pub reminder_id: Uuid,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    pub channel: String,
    pub segment: String,
    pub step_id: String,
    pub template: String,
    pub variant: Option<String>,
    pub status: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub command: serde_json::Value,
}

const DELIVERY_COLUMNS: &str = "delivery_id, reminder_id, tenant, customer_id, invoice_ids, channel, segment, step_id, template, variant, status, sent_at, command";

/// The delivery of a reminder (the latest, if the reminder was delivered again).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn delivery_of_reminder(
    pool: &PgPool,
    reminder_id: Uuid,
) -> Result<Option<TrackedDelivery>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE reminder_id = $1 ORDER BY received_at DESC LIMIT 1"
    ))
    .bind(reminder_id)
    .fetch_optional(pool)
    .await
    .map_err(StorageError::query("reading a reminder's delivery"))
}

/// A delivery by our send id, or by the provider's message id.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn delivery_by_send_or_message_id(
    pool: &PgPool,
    send_id: Option<Uuid>,
    provider_message_id: Option<&str>,
) -> Result<Option<TrackedDelivery>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE delivery_id = $1 OR ($2::text IS NOT NULL AND provider_message_id = $2)
         ORDER BY (delivery_id = $1) DESC LIMIT 1"
    ))
    .bind(send_id.unwrap_or(Uuid::nil()))
    .bind(provider_message_id)
    .fetch_optional(pool)
    .await
    .map_err(StorageError::query("finding a delivery"))
}

/// Reminders sent about an invoice, oldest first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn sent_for_invoice(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<TrackedDelivery>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE invoice_ids @> ARRAY[$1::text] AND tenant = $2 AND status = 'sent'
         ORDER BY sent_at"
    ))
    .bind(invoice_id)
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading the reminders of an invoice"))
}

/// An open or a click to record.
#[derive(Debug, Clone)]
pub struct NewInteraction {
    pub tenant: String,
    pub reminder_id: Uuid,
    pub delivery_id: Option<Uuid>,
    pub customer_id: String,
    pub invoice_id: Option<String>,
    /// `open` or `click`.
    pub kind: &'static str,
    pub link: Option<String>,
    pub human: bool,
    pub machine_reason: Option<String>,
    pub source: &'static str,
    pub provider: Option<String>,
    pub user_agent: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Records an interaction; returns whether it is the delivery's first human one of its kind.
///
/// # Errors
/// [`StorageError::Query`] when a statement fails.
pub async fn record_interaction(
    connection: &mut PgConnection,
    interaction: &NewInteraction,
) -> Result<bool, StorageError> {
    sqlx::query(
        "INSERT INTO interactions (tenant, reminder_id, delivery_id, customer_id, invoice_id, kind, link,
             classification, machine_reason, source, provider, user_agent, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, left($12, 500), $13)",
    )
    .bind(&interaction.tenant)
    .bind(interaction.reminder_id)
    .bind(interaction.delivery_id)
    .bind(&interaction.customer_id)
    .bind(&interaction.invoice_id)
    .bind(interaction.kind)
    .bind(&interaction.link)
    .bind(if interaction.human { "human" } else { "machine" })
    .bind(&interaction.machine_reason)
    .bind(interaction.source)
    .bind(&interaction.provider)
    .bind(&interaction.user_agent)
    .bind(interaction.occurred_at)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("recording an interaction"))?;
    let (Some(delivery_id), true) = (interaction.delivery_id, interaction.human) else {
        return Ok(false);
    };
    let column = if interaction.kind == "open" {
        "first_opened_at"
    } else {
        "first_clicked_at"
    };
    let updated = sqlx::query(&format!(
        "UPDATE deliveries SET {column} = $2 WHERE delivery_id = $1 AND {column} IS NULL"
    ))
    .bind(delivery_id)
    .bind(interaction.occurred_at)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a first interaction"))?;
    Ok(updated.rows_affected() == 1)
}

/// Holds, until the transaction ends, the right to record a click of this reminder, across
/// requests and replicas. Scanners fetch the links of a message in parallel: without it, two
/// clicks recorded at the same instant would each find no other click yet, and both pass for a
/// person's.
///
/// # Errors
/// [`StorageError::Query`] when the statement fails.
pub async fn lock_reminder_clicks(
    connection: &mut PgConnection,
    reminder_id: Uuid,
) -> Result<(), StorageError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('relance-clicks:' || $1, 0))")
        .bind(reminder_id.to_string())
        .execute(connection)
        .await
        .map_err(StorageError::query("locking a reminder's clicks"))?;
    Ok(())
}

/// Clicks of a reminder within `[since, until]` on links other than `link`.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn other_clicks_between(
    connection: &mut PgConnection,
    reminder_id: Uuid,
    link: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<i64, StorageError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM interactions
         WHERE reminder_id = $1 AND kind = 'click' AND link IS DISTINCT FROM $2
           AND occurred_at BETWEEN $3 AND $4",
    )
    .bind(reminder_id)
    .bind(link)
    .bind(since)
    .bind(until)
    .fetch_one(connection)
    .await
    .map_err(StorageError::query("reading recent clicks"))
}

/// What taking back a burst changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclassified {
    /// The link of each click taken back, one entry per click.
    pub links: Vec<Option<String>>,
    /// The delivery had a first human click and has none left: its reminder no longer counts
    /// as clicked.
    pub click_withdrawn: bool,
}

/// Takes back as machine clicks, with `reason`, the human clicks of a reminder within
/// `[since, until]` on links other than `link`: a click on another link that close shows they
/// were a scanner's burst, not a person's. The first human click of the reminder's deliveries
/// becomes the earliest human click left, if any.
///
/// # Errors
/// [`StorageError::Query`] when a statement fails.
pub async fn reclassify_burst(
    connection: &mut PgConnection,
    delivery_id: Uuid,
    reminder_id: Uuid,
    link: &str,
    reason: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Reclassified, StorageError> {
    let links: Vec<Option<String>> = sqlx::query_scalar(
        "UPDATE interactions SET classification = 'machine', machine_reason = $5
         WHERE reminder_id = $1 AND kind = 'click' AND classification = 'human'
           AND link IS DISTINCT FROM $2 AND occurred_at BETWEEN $3 AND $4
         RETURNING link",
    )
    .bind(reminder_id)
    .bind(link)
    .bind(since)
    .bind(until)
    .bind(reason)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query("taking back a burst of clicks"))?;
    if links.is_empty() {
        return Ok(Reclassified::default());
    }
    let firsts: Vec<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
        "UPDATE deliveries d SET first_clicked_at = (
             SELECT min(i.occurred_at) FROM interactions i
             WHERE i.reminder_id = d.reminder_id AND i.kind = 'click'
               AND i.delivery_id = d.delivery_id AND i.classification = 'human')
         WHERE d.reminder_id = $1 AND d.first_clicked_at IS NOT NULL
         RETURNING d.delivery_id, d.first_clicked_at",
    )
    .bind(reminder_id)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recomputing a first human click"))?;
    let click_withdrawn = firsts
        .iter()
        .any(|(delivery, first)| *delivery == delivery_id && first.is_none());
    Ok(Reclassified {
        links,
        click_withdrawn,
    })
}

/// A customer action to record.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub action_id: Uuid,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_id: String,
    pub reminder_id: Option<Uuid>,
    pub action: &'static str,
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub promised_on: Option<NaiveDate>,
    pub message: Option<String>,
    pub acted_at: DateTime<Utc>,
}

/// Records an action; `false` when this very action (same id) was recorded before.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn record_action(
    connection: &mut PgConnection,
    action: &NewAction,
) -> Result<bool, StorageError> {
    let inserted = sqlx::query(
        "INSERT INTO customer_actions (action_id, tenant, customer_id, invoice_id, reminder_id, action,
             reference, reason, promised_on, message, acted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (action_id) DO NOTHING",
    )
    .bind(action.action_id)
    .bind(&action.tenant)
    .bind(&action.customer_id)
    .bind(&action.invoice_id)
    .bind(action.reminder_id)
    .bind(action.action)
    .bind(&action.reference)
    .bind(&action.reason)
    .bind(action.promised_on)
    .bind(&action.message)
    .bind(action.acted_at)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a customer action"))?;
    Ok(inserted.rows_affected() == 1)
}

/// A recorded customer action.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActionRecord {
    pub action: String,
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub promised_on: Option<NaiveDate>,
    pub message: Option<String>,
    pub acted_at: DateTime<Utc>,
}

/// The actions recorded for an invoice, newest first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn actions_of_invoice(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<ActionRecord>, StorageError> {
    sqlx::query_as(
        "SELECT action, reference, reason, promised_on, message, acted_at FROM customer_actions
         WHERE tenant = $1 AND invoice_id = $2 ORDER BY acted_at DESC",
    )
    .bind(tenant)
    .bind(invoice_id)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading customer actions"))
}

/// Records a webhook event's key; `false` if it was handled before.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn first_time_webhook(
    connection: &mut PgConnection,
    provider: &str,
    key: &str,
    at: DateTime<Utc>,
) -> Result<bool, StorageError> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (provider, event_key, received_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(key)
    .bind(at)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a webhook event"))?;
    Ok(inserted.rows_affected() == 1)
}

/// Sets a delivery milestone (`delivered_at`, `bounced_at`, `complained_at`) once.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn mark_milestone(
    connection: &mut PgConnection,
    delivery_id: Uuid,
    milestone: &str,
    at: DateTime<Utc>,
) -> Result<bool, StorageError> {
    let column = match milestone {
        "delivered" => "delivered_at",
        "bounced" => "bounced_at",
        _ => "complained_at",
    };
    let updated = sqlx::query(&format!(
        "UPDATE deliveries SET {column} = $2 WHERE delivery_id = $1 AND {column} IS NULL"
    ))
    .bind(delivery_id)
    .bind(at)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a delivery milestone"))?;
    Ok(updated.rows_affected() == 1)
}

/// A payment's credit to a reminder.
#[derive(Debug, Clone)]
pub struct NewAttribution {
    pub payment_id: String,
    pub reminder_id: Uuid,
    pub tenant: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub model: &'static str,
    pub credited_minor: i64,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    pub reminder_sent_at: DateTime<Utc>,
    pub first_reminder_at: Option<DateTime<Utc>>,
    pub attributed_at: DateTime<Utc>,
}

/// Records attributions; returns whether this payment was attributed for the first time.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn record_attributions(
    connection: &mut PgConnection,
    rows: &[NewAttribution],
) -> Result<bool, StorageError> {
    let mut first = false;
    for row in rows {
        let inserted = sqlx::query(
            "INSERT INTO attributions (payment_id, reminder_id, tenant, invoice_id, customer_id, model,
                 credited_minor, currency, paid_at, reminder_sent_at, first_reminder_at, attributed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant, payment_id, reminder_id) DO NOTHING",
        )
        .bind(&row.payment_id)
        .bind(row.reminder_id)
        .bind(&row.tenant)
        .bind(&row.invoice_id)
        .bind(&row.customer_id)
        .bind(row.model)
        .bind(row.credited_minor)
        .bind(&row.currency)
        .bind(row.paid_at)
        .bind(row.reminder_sent_at)
        .bind(row.first_reminder_at)
        .bind(row.attributed_at)
        .execute(&mut *connection)
        .await
        .map_err(StorageError::query("recording an attribution"))?;
        first |= inserted.rows_affected() == 1;
    }
    Ok(first)
}

/// What an action page shows of an invoice, with its customer's locale.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn invoice_page(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Option<InvoicePage>, StorageError> {
    sqlx::query_as(
        "SELECT i.invoice_id, i.tenant, i.customer_id, i.state, i.pause_reason, i.pause_until, i.closed_reason,
                i.number, i.currency::text AS currency, i.amount_due_minor, i.due_on, c.locale,
                c.timezone
         FROM invoices i LEFT JOIN customers c USING (tenant, customer_id)
         WHERE i.tenant = $1 AND i.invoice_id = $2",
    )
    .bind(tenant)
    .bind(invoice_id)
    .fetch_optional(pool)
    .await
    .map_err(StorageError::query("reading an invoice for a page"))
}

/// What an action page shows of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvoicePage {
    pub invoice_id: String,
    pub tenant: String,
    pub customer_id: String,
    pub state: String,
    pub pause_reason: Option<String>,
    pub pause_until: Option<NaiveDate>,
    pub closed_reason: Option<String>,
    pub number: Option<String>,
    pub currency: Option<String>,
    pub amount_due_minor: i64,
    pub due_on: Option<NaiveDate>,
    pub locale: Option<String>,
    /// The customer's IANA time zone, once their profile is known.
    pub timezone: Option<String>,
}
