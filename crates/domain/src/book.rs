//! The rules that span invoices and customers: a set of dunning records that events are applied
//! to. The ingestor loads the part of the book a batch touches, applies the batch through it,
//! and saves the result; replaying a whole stream through one book gives the state the
//! ingestor must end in.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::customer::{
    apply_customer_event, payment_behaviour, CustomerEvent, CustomerFacts, PaymentBehaviour,
};
use crate::invoice::{apply_invoice_event, DunningState, DunningView, Invoice, InvoiceEvent};
use crate::{reject, Rejection, RejectionReason};

/// An event for the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookEvent {
    Invoice(InvoiceEvent),
    Customer(CustomerEvent),
}

/// A change of an invoice's dunning view worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub tenant: String,
    pub invoice_id: String,
    pub customer_id: String,
    /// The view before, if the invoice was already known (not awaiting its issue).
    pub from: Option<DunningView>,
    pub to: DunningView,
}

/// Invoices and customers by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub invoices: BTreeMap<String, Invoice>,
    pub customers: BTreeMap<String, CustomerFacts>,
}

impl Book {
    /// Applies `event`; returns the state change it caused, if any, judged on `today`.
    ///
    /// # Errors
    /// [`Rejection`] when the event contradicts what the book holds (another tenant's customer
    /// or invoice, another customer's invoice, another currency, an overflowing sum). The book
    /// is unchanged then.
    pub fn apply(
        &mut self,
        event: &BookEvent,
        today: NaiveDate,
    ) -> Result<Option<StateChange>, Rejection> {
        match event {
            BookEvent::Customer(event) => {
                let facts = apply_customer_event(self.customers.get(&event.customer_id), event)?;
                self.customers.insert(event.customer_id.clone(), facts);
                Ok(None)
            }
            BookEvent::Invoice(event) => {
                if let Some(customer) = self.customers.get(&event.customer_id) {
                    if customer.tenant != event.tenant {
                        return Err(reject(
                            RejectionReason::TenantMismatch,
                            format!(
                                "customer {} belongs to tenant {}, not {}",
                                event.customer_id, customer.tenant, event.tenant
                            ),
                        ));
                    }
                }
                let current = self.invoices.get(&event.invoice_id);
                let before = current.map(|invoice| invoice.view(today));
                let invoice = apply_invoice_event(current, event)?;
                let after = invoice.view(today);
                self.customers
                    .entry(event.customer_id.clone())
                    .or_insert_with(|| CustomerFacts {
                        tenant: event.tenant.clone(),
                        customer_id: event.customer_id.clone(),
                        profile: None,
                    });
                self.invoices.insert(event.invoice_id.clone(), invoice);
                let from = before.filter(|view| view.state != DunningState::AwaitingInvoice);
                let changed = after.state != DunningState::AwaitingInvoice
                    && from.as_ref().is_none_or(|from| {
                        from.state != after.state
                            || from.amount_due_minor != after.amount_due_minor
                            || from.currency != after.currency
                    });
                Ok(changed.then(|| StateChange {
                    tenant: event.tenant.clone(),
                    invoice_id: event.invoice_id.clone(),
                    customer_id: event.customer_id.clone(),
                    from,
                    to: after,
                }))
            }
        }
    }

    /// Applies `event` at `now`, judged on the customer's own date (their time zone, else
    /// `fallback`): the day a promise or a hold ends is the customer's day, not UTC's.
    ///
    /// # Errors
    /// As [`Book::apply`].
    pub fn apply_at(
        &mut self,
        event: &BookEvent,
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> Result<Option<StateChange>, Rejection> {
        let customer_id = match event {
            BookEvent::Customer(event) => &event.customer_id,
            BookEvent::Invoice(event) => &event.customer_id,
        };
        let today = self.today_of(customer_id, now, fallback);
        self.apply(event, today)
    }

    /// The customer's date at `now`.
    pub fn today_of(
        &self,
        customer_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> NaiveDate {
        crate::calendar::customer_today(self.customers.get(customer_id), fallback, now)
    }

    /// The payment behaviour of `customer_id` from the invoices in the book, on `today`.
    pub fn behaviour_of(&self, customer_id: &str, today: NaiveDate) -> PaymentBehaviour {
        let outcomes: Vec<_> = self
            .invoices
            .values()
            .filter(|invoice| invoice.customer_id == customer_id)
            .filter_map(|invoice| invoice.outcome(today))
            .collect();
        payment_behaviour(&outcomes)
    }
}
