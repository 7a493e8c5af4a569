//! Repairing customers' payment behaviour. The ingestor keeps it as sums that each batch adds its
//! change to (`customers::add_behaviour_changes`); sums kept that way are exact
//! (the property test `behaviour_changes_added_batch_by_batch_equal_the_behaviour_of_all_invoices`),
//! but a write outside relance or a bug would leave them wrong for good. A recount reads all of
//! a customer's invoices under the customer's lock, as a full recomputation did before the
//! sums, and writes the result when it differs.

use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::calendar::UNKNOWN_ZONE;
use relance_domain::{Book, PaymentBehaviour};
use serde::Serialize;
use sqlx::PgConnection;

use crate::error::StorageError;
use crate::{customers, decode_facts, key_columns, scheduling, RawFacts, Scoped};

/// A customer's payment behaviour as the `customers` row holds it, read as raw columns: sums
/// that drifted may not read as a [`PaymentBehaviour`] at all (a negative count, an amount map
/// written by hand), and those are what a recount must be able to repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSums {
    pub paid_invoices: i32,
    pub paid_on_time: i32,
    pub total_days_late: i64,
    pub open_invoices: i32,
    pub open_balance: serde_json::Value,
    pub lifetime_paid: serde_json::Value,
    pub first_invoice_on: Option<NaiveDate>,
}

impl StoredSums {
    /// The row `behaviour` is written as (`customers::write_behaviours`).
    fn of(behaviour: &PaymentBehaviour) -> Self {
        let count = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        Self {
            paid_invoices: count(behaviour.paid_invoices),
            paid_on_time: count(behaviour.paid_on_time),
            total_days_late: behaviour.total_days_late,
            open_invoices: count(behaviour.open_invoices),
            open_balance: serde_json::to_value(&behaviour.open_balance).unwrap_or_default(),
            lifetime_paid: serde_json::to_value(&behaviour.lifetime_paid).unwrap_or_default(),
            first_invoice_on: behaviour.first_invoice_on,
        }
    }

    /// The names of the columns in which `self` and `other` differ, in the table's order.
    fn differences(&self, other: &Self) -> Vec<&'static str> {
        [
            ("paid_invoices", self.paid_invoices == other.paid_invoices),
            ("paid_on_time", self.paid_on_time == other.paid_on_time),
            (
                "total_days_late",
                self.total_days_late == other.total_days_late,
            ),
            ("open_invoices", self.open_invoices == other.open_invoices),
            ("open_balance", self.open_balance == other.open_balance),
            ("lifetime_paid", self.lifetime_paid == other.lifetime_paid),
            (
                "first_invoice_on",
                self.first_invoice_on == other.first_invoice_on,
            ),
        ]
        .into_iter()
        .filter_map(|(name, same)| (!same).then_some(name))
        .collect()
    }
}

/// A customer who could not be recounted: one of their invoices no longer reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRecounted {
    pub tenant: String,
    pub customer_id: String,
    pub invoice_id: String,
    pub detail: String,
}

/// What a recount found: the customers recounted, and those it could not recount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recounted {
    pub recounts: Vec<Recount>,
    pub not_recounted: Vec<NotRecounted>,
}

/// A customer's payment behaviour as stored and as counted again from all their invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recount {
    pub tenant: String,
    pub customer_id: String,
    pub stored: StoredSums,
    pub recounted: PaymentBehaviour,
    /// The columns that differ (empty when the stored sums are right).
    pub drifted: Vec<&'static str>,
}

type SumsRow = (
    String,
    String,
    i32,
    i32,
    i64,
    i32,
    serde_json::Value,
    serde_json::Value,
    Option<NaiveDate>,
);

/// Counts the payment behaviour of the customers among `keys` that exist again from all their
/// invoices, locking the customers (the lock every writer of their invoices takes first, so no
/// change of theirs lands in between). With `repair`, a customer whose stored sums differ gets
/// the recount written in their place, and their open invoices are marked for planning (their
/// segment may follow their behaviour). In key order.
///
/// A customer one of whose invoices no longer reads is left as stored and reported in
/// [`Recounted::not_recounted`]: the others are recounted all the same.
///
/// # Errors
/// [`StorageError`] when a query fails.
pub async fn recount(
    connection: &mut PgConnection,
    keys: &[Scoped],
    now: DateTime<Utc>,
    repair: bool,
) -> Result<Recounted, StorageError> {
    if keys.is_empty() {
        return Ok(Recounted::default());
    }
    let (tenants, ids) = key_columns(keys);
    let stored: Vec<SumsRow> = sqlx::query_as(
        "SELECT tenant, customer_id, paid_invoices, paid_on_time, total_days_late, open_invoices,
                open_balance, lifetime_paid, first_invoice_on
         FROM customers
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, customer_id FOR UPDATE",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query("locking customers to recount"))?;
    if stored.is_empty() {
        return Ok(Recounted::default());
    }
    let (tenants, ids) = key_columns(
        &stored
            .iter()
            .map(|row| (row.0.clone(), row.1.clone()))
            .collect::<Vec<_>>(),
    );
    let rows: Vec<(String, String, String, RawFacts)> = sqlx::query_as(
        "SELECT tenant, customer_id, invoice_id, facts FROM invoices
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query(
        "loading customers' invoices to recount",
    ))?;
    // What an invoice counts for does not depend on the date or the customer's time zone
    // (`Invoice::outcome`), so the book needs no profiles: a profile that no longer reads
    // cannot stop a repair.
    let mut book = Book::default();
    let mut not_recounted: Vec<NotRecounted> = Vec::new();
    for (tenant, customer_id, invoice_id, facts) in rows {
        match decode_facts("invoice", &invoice_id, &facts) {
            Ok(invoice) => {
                book.invoices.insert((tenant, invoice_id), invoice);
            }
            Err(error) => not_recounted.push(NotRecounted {
                tenant,
                customer_id,
                invoice_id,
                detail: error.to_string(),
            }),
        }
    }
    let unreadable = |tenant: &str, customer_id: &str| {
        not_recounted
            .iter()
            .any(|not| not.tenant == tenant && not.customer_id == customer_id)
    };
    let stored: Vec<SumsRow> = stored
        .into_iter()
        .filter(|row| !unreadable(&row.0, &row.1))
        .collect();
    let found: Vec<Scoped> = stored
        .iter()
        .map(|row| (row.0.clone(), row.1.clone()))
        .collect();
    let recounts: Vec<Recount> = book
        .recount_behaviours(&found, now, UNKNOWN_ZONE)
        .into_iter()
        .zip(stored)
        .map(|(((tenant, customer_id), recounted), row)| {
            let (_, _, paid, on_time, days_late, open, balance, lifetime, first) = row;
            let stored = StoredSums {
                paid_invoices: paid,
                paid_on_time: on_time,
                total_days_late: days_late,
                open_invoices: open,
                open_balance: balance,
                lifetime_paid: lifetime,
                first_invoice_on: first,
            };
            Recount {
                drifted: stored.differences(&StoredSums::of(&recounted)),
                tenant,
                customer_id,
                stored,
                recounted,
            }
        })
        .collect();
    if repair {
        let drifted: Vec<(Scoped, &Recount)> = recounts
            .iter()
            .filter(|recount| !recount.drifted.is_empty())
            .map(|recount| {
                (
                    (recount.tenant.clone(), recount.customer_id.clone()),
                    recount,
                )
            })
            .collect();
        let written: Vec<(&Scoped, PaymentBehaviour)> = drifted
            .iter()
            .map(|(key, recount)| (key, recount.recounted.clone()))
            .collect();
        customers::write_behaviours(connection, &written).await?;
        let keys: Vec<Scoped> = drifted.into_iter().map(|(key, _)| key).collect();
        scheduling::mark_customers_for_replanning(connection, &keys, now).await?;
    }
    // One line a customer: the first of their invoices that does not read.
    not_recounted.sort_by(|a, b| {
        (&a.tenant, &a.customer_id, &a.invoice_id).cmp(&(&b.tenant, &b.customer_id, &b.invoice_id))
    });
    not_recounted.dedup_by(|a, b| a.tenant == b.tenant && a.customer_id == b.customer_id);
    Ok(Recounted {
        recounts,
        not_recounted,
    })
}

/// Up to `limit` customers of `tenant` after `after` (by id), to recount a tenant's customers
/// page by page.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn customers_after(
    connection: &mut PgConnection,
    tenant: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Scoped>, StorageError> {
    sqlx::query_as(
        "SELECT tenant, customer_id FROM customers
         WHERE tenant = $1 AND ($2::text IS NULL OR customer_id > $2)
         ORDER BY customer_id LIMIT $3",
    )
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("listing customers to recount"))
}
