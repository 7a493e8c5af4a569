//! Repairing customers' payment behaviour. The ingestor keeps it as sums that each batch adds its
//! change to (`customers::add_behaviour_changes`); sums kept that way are exact
//! (the property test `behaviour_changes_added_batch_by_batch_equal_the_behaviour_of_all_invoices`),
//! but a write outside relance or a bug would leave them wrong for good. A recount reads all of
//! a customer's invoices under the customer's lock, as a full recomputation did before the
//! sums, and writes the result when it differs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use relance_domain::calendar::UNKNOWN_ZONE;
use relance_domain::{Book, PaymentBehaviour};
use serde::Serialize;
use sqlx::PgConnection;

use crate::error::StorageError;
use crate::{customers, decode_facts, key_columns, RawFacts, Scoped};

/// A customer's payment behaviour as stored and as counted again from all their invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recount {
    pub tenant: String,
    pub customer_id: String,
    pub stored: PaymentBehaviour,
    pub recounted: PaymentBehaviour,
    /// The sums that differ (empty when the stored ones are right).
    pub drifted: Vec<&'static str>,
}

/// Counts the payment behaviour of the customers among `keys` that exist again from all their
/// invoices, locking the customers (the lock every writer of their invoices takes first, so no
/// change of theirs lands in between). With `repair`, a customer whose stored sums differ gets
/// the recount written in their place. In key order.
///
/// # Errors
/// [`StorageError`] when a query fails or a stored record is unreadable.
pub async fn recount(
    connection: &mut PgConnection,
    keys: &[Scoped],
    now: DateTime<Utc>,
    repair: bool,
) -> Result<Vec<Recount>, StorageError> {
    let loaded = customers::load_for_update_with_behaviour(connection, keys).await?;
    if loaded.is_empty() {
        return Ok(Vec::new());
    }
    let mut found: Vec<Scoped> = loaded.keys().cloned().collect();
    found.sort();
    let (tenants, ids) = key_columns(&found);
    let rows: Vec<(String, String, RawFacts)> = sqlx::query_as(
        "SELECT tenant, invoice_id, facts FROM invoices
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query(
        "loading customers' invoices to recount",
    ))?;
    let mut book = Book::default();
    for (tenant, invoice_id, facts) in rows {
        let invoice = decode_facts("invoice", &invoice_id, &facts)?;
        book.invoices.insert((tenant, invoice_id), invoice);
    }
    let mut stored: BTreeMap<Scoped, PaymentBehaviour> = BTreeMap::new();
    for (key, (facts, behaviour)) in loaded {
        book.customers.insert(key.clone(), facts);
        stored.insert(key, behaviour);
    }
    let recounts: Vec<Recount> = book
        .recount_behaviours(&found, now, UNKNOWN_ZONE)
        .into_iter()
        .map(|((tenant, customer_id), recounted)| {
            let stored = stored
                .remove(&(tenant.clone(), customer_id.clone()))
                .unwrap_or_default();
            Recount {
                drifted: stored.differences(&recounted),
                tenant,
                customer_id,
                stored,
                recounted,
            }
        })
        .collect();
    if repair {
        let keys: Vec<Scoped> = recounts
            .iter()
            .map(|recount| (recount.tenant.clone(), recount.customer_id.clone()))
            .collect();
        let repaired: Vec<(&Scoped, PaymentBehaviour)> = recounts
            .iter()
            .zip(&keys)
            .filter(|(recount, _)| !recount.drifted.is_empty())
            .map(|(recount, key)| (key, recount.recounted.clone()))
            .collect();
        customers::write_behaviours(connection, &repaired).await?;
    }
    Ok(recounts)
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
