//! The rules that span invoices and customers: a set of dunning records that events are applied
//! to. The ingestor loads the part of the book a batch touches, applies the batch through it,
//! and saves the result; replaying a whole stream through one book gives the state the
//! ingestor must end in.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use crate::customer::{
    apply_customer_event, payment_behaviour, BehaviourChange, CustomerEvent, CustomerFacts,
    InvoiceOutcome, PaymentBehaviour,
};
use crate::invoice::{apply_invoice_event, DunningState, DunningView, Invoice, InvoiceEvent};
use crate::Rejection;

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

/// An invoice's or a customer's key: `(tenant, id)`. Ids are each tenant's own (two billing
/// entities may both number an invoice `F-2026-0001`), so nothing is ever looked up by id alone.
pub type Scoped = (String, String);

/// The key of `id` in `tenant`.
#[must_use]
pub fn scoped(tenant: &str, id: &str) -> Scoped {
    (tenant.to_string(), id.to_string())
}

/// Invoices and customers by `(tenant, id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub invoices: BTreeMap<Scoped, Invoice>,
    pub customers: BTreeMap<Scoped, CustomerFacts>,
}

impl Book {
    /// Applies `event`; returns the state change it caused, if any, judged on `today`.
    ///
    /// # Errors
    /// [`Rejection`] when the event contradicts what the book holds (another customer's invoice,
    /// another currency, an overflowing sum). The book is unchanged then. Another tenant's
    /// records are never in the way: each tenant's ids are its own.
    pub fn apply(
        &mut self,
        event: &BookEvent,
        today: NaiveDate,
    ) -> Result<Option<StateChange>, Rejection> {
        match event {
            BookEvent::Customer(event) => {
                let key = scoped(&event.tenant, &event.customer_id);
                let facts = apply_customer_event(self.customers.get(&key), event)?;
                self.customers.insert(key, facts);
                Ok(None)
            }
            BookEvent::Invoice(event) => {
                let key = scoped(&event.tenant, &event.invoice_id);
                let current = self.invoices.get(&key);
                let before = current.map(|invoice| invoice.view(today));
                let invoice = apply_invoice_event(current, event)?;
                let after = invoice.view(today);
                self.customers
                    .entry(scoped(&event.tenant, &event.customer_id))
                    .or_insert_with(|| CustomerFacts {
                        tenant: event.tenant.clone(),
                        customer_id: event.customer_id.clone(),
                        profile: None,
                    });
                self.invoices.insert(key, invoice);
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
        let (tenant, customer_id) = match event {
            BookEvent::Customer(event) => (&event.tenant, &event.customer_id),
            BookEvent::Invoice(event) => (&event.tenant, &event.customer_id),
        };
        let today = self.today_of(tenant, customer_id, now, fallback);
        self.apply(event, today)
    }

    /// The customer's date at `now`.
    pub fn today_of(
        &self,
        tenant: &str,
        customer_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> NaiveDate {
        crate::calendar::customer_today(
            self.customers.get(&scoped(tenant, customer_id)),
            fallback,
            now,
        )
    }

    /// The customer's date at `now`, for one of their invoices.
    pub fn today_of_invoice(
        &self,
        invoice: &Invoice,
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> NaiveDate {
        self.today_of(&invoice.tenant, &invoice.customer_id, now, fallback)
    }

    /// What payment behaviour reads of each invoice in the book (those whose invoice is known):
    /// taken before a batch is applied, for [`Book::behaviour_changes`].
    pub fn outcomes(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> HashMap<Scoped, InvoiceOutcome> {
        self.invoices
            .iter()
            .filter_map(|(key, invoice)| {
                let today = self.today_of_invoice(invoice, now, fallback);
                invoice.outcome(today).map(|outcome| (key.clone(), outcome))
            })
            .collect()
    }

    /// How the payment behaviour of each of `customers` changed since the book's invoices had
    /// the outcomes `before` (from [`Book::outcomes`]): only the invoices in the book are read,
    /// whatever else the customers have. One pass over the book, however many customers.
    pub fn behaviour_changes(
        &self,
        before: &HashMap<Scoped, InvoiceOutcome>,
        customers: &[Scoped],
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> Vec<(Scoped, BehaviourChange)> {
        let mut in_book: HashMap<(&str, &str), Vec<(&Scoped, &Invoice)>> = HashMap::new();
        for (key, invoice) in &self.invoices {
            in_book
                .entry((invoice.tenant.as_str(), invoice.customer_id.as_str()))
                .or_default()
                .push((key, invoice));
        }
        customers
            .iter()
            .map(|customer| {
                let invoices = in_book
                    .get(&(customer.0.as_str(), customer.1.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let was: Vec<&InvoiceOutcome> = invoices
                    .iter()
                    .filter_map(|(key, _)| before.get(*key))
                    .collect();
                let is: Vec<InvoiceOutcome> = invoices
                    .iter()
                    .filter_map(|(_, invoice)| {
                        invoice.outcome(self.today_of_invoice(invoice, now, fallback))
                    })
                    .collect();
                (customer.clone(), BehaviourChange::between(was, &is))
            })
            .collect()
    }

    /// The payment behaviour of each of `customers` counted again from the invoices in the
    /// book, which must hold all of theirs: what the stored sums must equal, to repair them if
    /// they drifted (a write outside relance, a bug). One pass over the book.
    pub fn recount_behaviours(
        &self,
        customers: &[Scoped],
        now: chrono::DateTime<chrono::Utc>,
        fallback: chrono_tz::Tz,
    ) -> Vec<(Scoped, PaymentBehaviour)> {
        let mut outcomes: HashMap<(&str, &str), Vec<InvoiceOutcome>> = HashMap::new();
        for invoice in self.invoices.values() {
            if let Some(outcome) = invoice.outcome(self.today_of_invoice(invoice, now, fallback)) {
                outcomes
                    .entry((invoice.tenant.as_str(), invoice.customer_id.as_str()))
                    .or_default()
                    .push(outcome);
            }
        }
        customers
            .iter()
            .map(|customer| {
                let theirs = outcomes
                    .get(&(customer.0.as_str(), customer.1.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                (customer.clone(), payment_behaviour(theirs))
            })
            .collect()
    }

    /// The payment behaviour of `customer_id` of `tenant` from the invoices in the book, on
    /// `today`.
    pub fn behaviour_of(
        &self,
        tenant: &str,
        customer_id: &str,
        today: NaiveDate,
    ) -> PaymentBehaviour {
        let outcomes: Vec<_> = self
            .invoices
            .values()
            .filter(|invoice| invoice.tenant == tenant && invoice.customer_id == customer_id)
            .filter_map(|invoice| invoice.outcome(today))
            .collect();
        payment_behaviour(&outcomes)
    }
}
