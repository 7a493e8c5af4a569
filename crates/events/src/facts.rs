//! relance's own facts about invoices (holds, approvals, promises, payment claims, disputes
//! reported by customers): applied through the domain in the caller's transaction, with the
//! state changes they cause published through the outbox and the invoices marked for planning.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use relance_domain::calendar::UNKNOWN_ZONE;
use relance_domain::{scoped, Book, BookEvent, Invoice, InvoiceEvent, InvoiceFact, Scoped};
use relance_storage::outbox::OutboxRecord;
use relance_storage::{customers, invoices, StorageError};
use sqlx::PgConnection;

use crate::{state_changed_record, CauseRef, EventBuildError};

/// Why a fact could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The domain refuses the fact for this invoice (a reason for people).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Event(#[from] EventBuildError),
}

/// Where a fact comes from: the service (`urn:relance:tracker`), an id unique to this
/// occurrence, and the kind of cause shown in `state_changed` events.
pub struct FactSource<'a> {
    pub source: &'a str,
    pub cause_id: &'a str,
    pub cause_type: &'a str,
}

/// Applies `fact` to each of `invoice_ids` of `tenant` (those that exist), in `transaction`:
/// stores the invoices, marks them for planning, and returns the `state_changed` records to
/// enqueue.
///
/// # Errors
/// [`ApplyError`] when the database fails or the domain refuses the fact.
pub async fn apply_invoice_fact(
    transaction: &mut PgConnection,
    tenant: &str,
    invoice_ids: &[String],
    fact: &InvoiceFact,
    origin: &FactSource<'_>,
    now: DateTime<Utc>,
    events_topic: &str,
) -> Result<Vec<OutboxRecord>, ApplyError> {
    // Customers before invoices, as everywhere (docs/operations.md#lock-order).
    let keys: Vec<Scoped> = invoice_ids
        .iter()
        .map(|invoice_id| scoped(tenant, invoice_id))
        .collect();
    let (locked_customers, loaded) =
        invoices::load_for_update_with_customers(transaction, &keys).await?;
    if loaded.is_empty() {
        return Ok(Vec::new());
    }
    let mut book = Book {
        invoices: loaded.into_iter().collect(),
        customers: locked_customers.into_iter().collect(),
    };
    let outcomes_before = fact
        .changes_payment_behaviour()
        .then(|| book.outcomes(now, UNKNOWN_ZONE));
    let mut records = Vec::new();
    let ids: Vec<Scoped> = book.invoices.keys().cloned().collect();
    for key in &ids {
        let Some(invoice) = book.invoices.get(key) else {
            continue;
        };
        let invoice_id = &key.1;
        let event_id = format!("{}:{}:{invoice_id}", fact.name(), origin.cause_id);
        let event = BookEvent::Invoice(InvoiceEvent {
            event_id: event_id.clone(),
            tenant: invoice.tenant.clone(),
            customer_id: invoice.customer_id.clone(),
            invoice_id: invoice_id.clone(),
            time: now,
            revision: None,
            fact: fact.clone(),
        });
        let change = book
            .apply_at(&event, now, UNKNOWN_ZONE)
            .map_err(|rejection| ApplyError::Refused(rejection.to_string()))?;
        if let Some(change) = change {
            let cause = CauseRef {
                source: origin.source,
                id: &event_id,
                event_type: origin.cause_type,
            };
            if let Some(record) =
                state_changed_record(&change, &cause, now, events_topic, origin.source)?
            {
                records.push(record);
            }
        }
    }
    let views: Vec<(&Invoice, relance_domain::DunningView, chrono::NaiveDate)> = book
        .invoices
        .values()
        .map(|invoice| {
            let today = book.today_of_invoice(invoice, now, UNKNOWN_ZONE);
            (invoice, invoice.view(today), today)
        })
        .collect();
    let rows: Vec<_> = views
        .iter()
        .map(|(invoice, view, today)| (*invoice, view, *today))
        .collect();
    invoices::upsert(transaction, &rows, Some(now)).await?;
    if let Some(before) = outcomes_before {
        let owners: BTreeSet<Scoped> = book
            .invoices
            .values()
            .map(|invoice| scoped(&invoice.tenant, &invoice.customer_id))
            .collect();
        let owners: Vec<Scoped> = owners.into_iter().collect();
        let changes = book.behaviour_changes(&before, &owners, now, UNKNOWN_ZONE);
        customers::add_behaviour_changes(transaction, &changes).await?;
    }
    Ok(records)
}
