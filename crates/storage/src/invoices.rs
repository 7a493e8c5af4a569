//! The invoices table: the domain record of each invoice and its derived dunning state.

use std::collections::HashMap;

use chrono::NaiveDate;
use relance_domain::{DunningState, DunningView, Invoice};
use sqlx::PgConnection;

use crate::error::StorageError;
use crate::{decode_facts, key_columns, RawFacts, Scoped};

type Row = (String, String, RawFacts);

fn decode_keyed((tenant, id, facts): Row) -> Result<(Scoped, Invoice), StorageError> {
    decode_facts("invoice", &id, &facts).map(|invoice| ((tenant, id), invoice))
}

/// Loads and locks the invoices among `keys` (tenant, invoice id) that exist, for the rest of
/// the transaction. Their customers must be locked first ([`load_for_update_with_customers`])
/// by any transaction that may also lock customers.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored invoice is unreadable.
pub async fn load_for_update(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<HashMap<Scoped, Invoice>, StorageError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // Locking in one order everywhere keeps concurrent batches from deadlocking.
    let (tenants, ids) = key_columns(keys);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant, invoice_id, facts FROM invoices
         WHERE (tenant, invoice_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, invoice_id FOR UPDATE",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading invoices"))?;
    rows.into_iter().map(decode_keyed).collect()
}

/// Locks the customers of the invoices among `keys`, then those invoices, in the one lock
/// order (docs/operations.md#lock-order), and returns both.
///
/// # Errors
/// [`StorageError`] when a query fails or a stored record is unreadable.
pub async fn load_for_update_with_customers(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<
    (
        HashMap<Scoped, relance_domain::CustomerFacts>,
        HashMap<Scoped, Invoice>,
    ),
    StorageError,
> {
    // An invoice never changes customer, so the unlocked read names the right rows.
    let customer_keys = customers_of(connection, keys).await?;
    let customers = crate::customers::load_for_update(connection, &customer_keys).await?;
    let invoices = load_for_update(connection, keys).await?;
    Ok((customers, invoices))
}

/// The customers (tenant, customer id) of the invoices among `keys` that exist, sorted,
/// without locking anything (to lock customers before their invoices).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn customers_of(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<Vec<Scoped>, StorageError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids) = key_columns(keys);
    sqlx::query_as(
        "SELECT DISTINCT tenant, customer_id FROM invoices
         WHERE (tenant, invoice_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, customer_id",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("finding the customers of invoices"))
}

/// The invoices among `keys` (tenant, invoice id) that exist, share-locked for the rest of
/// the transaction: a change to them (a payment) either committed before this read or waits
/// until the transaction ends (the sender's guard records its attempt in it).
///
/// # Errors
/// [`StorageError`] when the query fails or a stored invoice is unreadable.
pub async fn load_for_share(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<Vec<Invoice>, StorageError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids) = key_columns(keys);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant, invoice_id, facts FROM invoices
         WHERE (tenant, invoice_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, invoice_id FOR SHARE",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading invoices"))?;
    rows.into_iter()
        .map(|row| decode_keyed(row).map(|(_, invoice)| invoice))
        .collect()
}

/// The invoices of `tenant` among `invoice_ids` that exist, without locking them (readers that
/// decide from what the facts say now).
///
/// # Errors
/// [`StorageError`] when the query fails or a stored invoice is unreadable.
pub async fn load(
    pool: &sqlx::PgPool,
    tenant: &str,
    invoice_ids: &[String],
) -> Result<Vec<Invoice>, StorageError> {
    if invoice_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant, invoice_id, facts FROM invoices WHERE tenant = $1 AND invoice_id = ANY($2)",
    )
    .bind(tenant)
    .bind(invoice_ids)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("loading invoices"))?;
    rows.into_iter()
        .map(|row| decode_keyed(row).map(|(_, invoice)| invoice))
        .collect()
}

/// The earliest issue date among the invoices of each of `customer_keys` (as written in this
/// transaction), for customers whose first invoice's date moved later.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn first_issue_dates(
    connection: &mut PgConnection,
    customer_keys: &[Scoped],
) -> Result<HashMap<Scoped, Option<NaiveDate>>, StorageError> {
    if customer_keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, customer_ids) = key_columns(customer_keys);
    let rows: Vec<(String, String, Option<NaiveDate>)> = sqlx::query_as(
        "SELECT tenant, customer_id, min(issued_on) FROM invoices
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         GROUP BY tenant, customer_id",
    )
    .bind(&tenants)
    .bind(&customer_ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("finding customers' first issue dates"))?;
    Ok(rows
        .into_iter()
        .map(|(tenant, customer_id, first)| ((tenant, customer_id), first))
        .collect())
}

/// Writes invoices and their views, each derived for the date beside it (the customer's
/// date), in one statement. With `plan_at`, each is also marked for planning then (what
/// [`crate::scheduling::mark_for_replanning`] does, in the same row write: the ingestor marks
/// every invoice it changes, and a second update of each row cost as much as the first).
///
/// # Errors
/// [`StorageError::Query`] when the upsert fails.
pub async fn upsert(
    connection: &mut PgConnection,
    invoices: &[(&Invoice, &DunningView, NaiveDate)],
    plan_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), StorageError> {
    if invoices.is_empty() {
        return Ok(());
    }
    let mut columns = Columns::default();
    for (invoice, view, as_of) in invoices {
        columns.push(invoice, view);
        columns.as_of.push(*as_of);
    }
    sqlx::query(
        "INSERT INTO invoices AS i (invoice_id, tenant, customer_id, state, pause_reason, pause_until,
             escalated_to, closed_reason, currency, total_minor, amount_due_minor, overpaid_minor,
             net_paid_minor, number, issued_on, due_on, paid_at, state_as_of, facts,
             conflicting_amounts, next_action_at)
         SELECT invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to,
             closed_reason, currency, total_minor, amount_due_minor, overpaid_minor, net_paid_minor,
             number, issued_on, due_on, paid_at, as_of, facts::jsonb, conflicting, $21::timestamptz
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[],
             $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[],
             $13::bigint[], $14::text[], $15::date[], $16::date[], $17::timestamptz[], $18::date[],
             $19::text[], $20::int[])
             AS t(invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to,
                  closed_reason, currency, total_minor, amount_due_minor, overpaid_minor,
                  net_paid_minor, number, issued_on, due_on, paid_at, as_of, facts, conflicting)
         ON CONFLICT (tenant, invoice_id) DO UPDATE SET
             state = EXCLUDED.state, pause_reason = EXCLUDED.pause_reason,
             pause_until = EXCLUDED.pause_until, escalated_to = EXCLUDED.escalated_to,
             closed_reason = EXCLUDED.closed_reason, currency = EXCLUDED.currency,
             total_minor = EXCLUDED.total_minor, amount_due_minor = EXCLUDED.amount_due_minor,
             overpaid_minor = EXCLUDED.overpaid_minor, net_paid_minor = EXCLUDED.net_paid_minor,
             number = EXCLUDED.number, issued_on = EXCLUDED.issued_on, due_on = EXCLUDED.due_on,
             paid_at = EXCLUDED.paid_at, state_as_of = EXCLUDED.state_as_of,
             facts = EXCLUDED.facts, conflicting_amounts = EXCLUDED.conflicting_amounts,
             next_action_at = coalesce($21::timestamptz, i.next_action_at),
             updated_at = now()",
    )
    .bind(&columns.invoice_id)
    .bind(&columns.tenant)
    .bind(&columns.customer_id)
    .bind(&columns.state)
    .bind(&columns.pause_reason)
    .bind(&columns.pause_until)
    .bind(&columns.escalated_to)
    .bind(&columns.closed_reason)
    .bind(&columns.currency)
    .bind(&columns.total_minor)
    .bind(&columns.amount_due_minor)
    .bind(&columns.overpaid_minor)
    .bind(&columns.net_paid_minor)
    .bind(&columns.number)
    .bind(&columns.issued_on)
    .bind(&columns.due_on)
    .bind(&columns.paid_at)
    .bind(&columns.as_of)
    .bind(&columns.facts)
    .bind(&columns.conflicting)
    .bind(plan_at)
    .execute(connection)
    .await
    .map_err(StorageError::query("writing invoices"))?;
    Ok(())
}

#[derive(Default)]
struct Columns {
    invoice_id: Vec<String>,
    tenant: Vec<String>,
    customer_id: Vec<String>,
    state: Vec<&'static str>,
    pause_reason: Vec<Option<&'static str>>,
    pause_until: Vec<Option<NaiveDate>>,
    escalated_to: Vec<Option<&'static str>>,
    closed_reason: Vec<Option<&'static str>>,
    currency: Vec<Option<String>>,
    total_minor: Vec<i64>,
    amount_due_minor: Vec<i64>,
    overpaid_minor: Vec<i64>,
    net_paid_minor: Vec<i64>,
    number: Vec<Option<String>>,
    issued_on: Vec<Option<NaiveDate>>,
    due_on: Vec<Option<NaiveDate>>,
    paid_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    as_of: Vec<NaiveDate>,
    /// JSON text: serialised straight from the invoice, without a `serde_json::Value` tree
    /// between (building and dropping those trees was the ingestor's largest allocation cost).
    facts: Vec<String>,
    conflicting: Vec<i32>,
}

impl Columns {
    fn push(&mut self, invoice: &Invoice, view: &DunningView) {
        let (pause_reason, pause_until, escalated_to, closed_reason) = match view.state {
            DunningState::Paused { reason, until } => (Some(reason.code()), until, None, None),
            DunningState::Escalated { to } => (
                None,
                None,
                Some(match to {
                    relance_domain::EscalationTarget::Person => "person",
                    relance_domain::EscalationTarget::Agency => "agency",
                }),
                None,
            ),
            DunningState::Closed { reason } => (None, None, None, Some(reason.code())),
            _ => (None, None, None, None),
        };
        self.invoice_id.push(invoice.invoice_id.clone());
        self.tenant.push(invoice.tenant.clone());
        self.customer_id.push(invoice.customer_id.clone());
        self.state.push(view.state.name());
        self.pause_reason.push(pause_reason);
        self.pause_until.push(pause_until);
        self.escalated_to.push(escalated_to);
        self.closed_reason.push(closed_reason);
        self.currency
            .push(view.currency.as_ref().map(ToString::to_string));
        self.total_minor.push(view.total_minor);
        self.conflicting
            .push(i32::try_from(view.conflicting_amounts).unwrap_or(i32::MAX));
        self.amount_due_minor.push(view.amount_due_minor);
        self.overpaid_minor.push(view.overpaid_minor);
        self.net_paid_minor
            .push(view.paid_minor.saturating_sub(view.refunded_minor));
        self.number
            .push(invoice.number.as_ref().map(|number| number.value.clone()));
        self.issued_on
            .push(invoice.issued_on.as_ref().map(|issued| issued.value));
        self.due_on.push(view.due_on);
        self.paid_at.push(view.paid_at);
        // Serialising plain data cannot fail.
        self.facts
            .push(serde_json::to_string(invoice).unwrap_or_else(|_| "null".to_string()));
    }
}
