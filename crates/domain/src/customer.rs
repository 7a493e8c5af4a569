//! The profile of a customer: who to write to, how, and how they pay.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::invoice::{ClosedReason, DunningState, Invoice};
use crate::money::Currency;
use crate::version::{Version, Versioned};
use crate::{reject, Rejection, RejectionReason};

/// The collection contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A customer's risk of not paying, as the business rates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// The channel the customer prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferredChannel {
    Email,
    Sms,
    PhoneCall,
    Letter,
}

/// Attributes the dunning policy segments customers by.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Segment {
    pub vip: bool,
    pub risk_level: Option<RiskLevel>,
    pub customer_since: Option<NaiveDate>,
    pub tags: Vec<String>,
    pub preferred_channel: Option<PreferredChannel>,
}

/// What the billing system says about a customer (a full replacement on every upsert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub legal_name: String,
    pub contact: Contact,
    pub locale: String,
    pub timezone: String,
    pub country: String,
    pub segment: Segment,
}

/// An upsert of a customer's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub event_id: String,
    pub tenant: String,
    pub customer_id: String,
    pub time: DateTime<Utc>,
    pub revision: Option<i64>,
    pub profile: CustomerProfile,
}

/// Everything known about a customer from customer events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFacts {
    pub tenant: String,
    pub customer_id: String,
    /// The newest profile; an older upsert arriving later does not replace it.
    pub profile: Option<Versioned<CustomerProfile>>,
}

/// Applies a profile upsert (`None` for a customer not seen before).
///
/// # Errors
/// [`Rejection`] when the customer belongs to another tenant.
pub fn apply_customer_event(
    current: Option<&CustomerFacts>,
    event: &CustomerEvent,
) -> Result<CustomerFacts, Rejection> {
    let mut facts = match current {
        Some(facts) if facts.tenant != event.tenant => {
            return Err(reject(
                RejectionReason::TenantMismatch,
                format!(
                    "customer {} belongs to tenant {}, not {}",
                    facts.customer_id, facts.tenant, event.tenant
                ),
            ))
        }
        Some(facts) => facts.clone(),
        None => CustomerFacts {
            tenant: event.tenant.clone(),
            customer_id: event.customer_id.clone(),
            profile: None,
        },
    };
    let version = Version::new(event.revision, event.time, event.event_id.clone());
    Versioned::merge(&mut facts.profile, event.profile.clone(), &version);
    Ok(facts)
}

/// What payment behaviour needs to know about one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceOutcome {
    pub currency: Currency,
    pub issued_on: Option<NaiveDate>,
    pub due_on: Option<NaiveDate>,
    /// Still owed (not closed).
    pub open: bool,
    pub overdue: bool,
    pub amount_due_minor: i64,
    /// Payments minus refunds.
    pub net_paid_minor: i64,
    /// When it was paid, if it was closed as paid.
    pub paid_at: Option<DateTime<Utc>>,
}

/// What payment behaviour reads of an invoice, as its view says it and as the invoices table
/// stores it beside the facts: behaviour can be computed from stored rows without decoding
/// every invoice's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeColumns {
    pub currency: Option<Currency>,
    pub issued_on: Option<NaiveDate>,
    pub due_on: Option<NaiveDate>,
    /// Only the invoice's payments or disputes are known so far.
    pub awaiting_invoice: bool,
    pub closed: bool,
    pub closed_as_paid: bool,
    pub amount_due_minor: i64,
    /// Payments minus refunds.
    pub net_paid_minor: i64,
    pub paid_at: Option<DateTime<Utc>>,
}

impl OutcomeColumns {
    /// The outcome on `today`; `None` before the invoice itself is known.
    pub fn outcome(&self, today: NaiveDate) -> Option<InvoiceOutcome> {
        if self.awaiting_invoice {
            return None;
        }
        Some(InvoiceOutcome {
            currency: self.currency.clone()?,
            issued_on: self.issued_on,
            due_on: self.due_on,
            open: !self.closed,
            overdue: !self.closed && self.due_on.is_some_and(|due| today > due),
            amount_due_minor: self.amount_due_minor,
            net_paid_minor: self.net_paid_minor,
            paid_at: if self.closed_as_paid {
                self.paid_at
            } else {
                None
            },
        })
    }
}

impl Invoice {
    /// What payment behaviour reads of the invoice on `today`.
    pub fn outcome_columns(&self, today: NaiveDate) -> OutcomeColumns {
        let view = self.view(today);
        OutcomeColumns {
            currency: view.currency.clone(),
            issued_on: self.issued_on.as_ref().map(|issued| issued.value),
            due_on: view.due_on,
            awaiting_invoice: view.state == DunningState::AwaitingInvoice,
            closed: view.state.is_closed(),
            closed_as_paid: view.state
                == DunningState::Closed {
                    reason: ClosedReason::Paid,
                },
            amount_due_minor: view.amount_due_minor,
            net_paid_minor: view.paid_minor.saturating_sub(view.refunded_minor),
            paid_at: view.paid_at,
        }
    }

    /// The invoice's outcome for payment behaviour on `today`; `None` before the invoice itself
    /// is known.
    pub fn outcome(&self, today: NaiveDate) -> Option<InvoiceOutcome> {
        self.outcome_columns(today).outcome(today)
    }
}

/// How a customer pays, computed from their invoices. Kept as exact integers: ratios and
/// averages are computed when read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentBehaviour {
    /// Invoices closed as paid (with a known payment time and due date).
    pub paid_invoices: u32,
    /// Of those, paid on or before their due date.
    pub paid_on_time: u32,
    /// Sum over paid invoices of the days between due date and payment (0 when on time).
    pub total_days_late: i64,
    pub open_invoices: u32,
    pub overdue_invoices: u32,
    /// Still owed, per currency.
    pub open_balance: BTreeMap<Currency, i64>,
    /// Paid minus refunded over all invoices, per currency.
    pub lifetime_paid: BTreeMap<Currency, i64>,
    /// The issue date of the customer's first invoice.
    pub first_invoice_on: Option<NaiveDate>,
}

impl PaymentBehaviour {
    /// Share of paid invoices paid on time, in percent, if any invoice was paid.
    pub fn on_time_percent(&self) -> Option<u32> {
        (self.paid_invoices > 0).then(|| self.paid_on_time * 100 / self.paid_invoices)
    }

    /// Average days late over paid invoices, rounded down, if any invoice was paid.
    pub fn average_days_late(&self) -> Option<i64> {
        (self.paid_invoices > 0).then(|| self.total_days_late / i64::from(self.paid_invoices))
    }

    /// When the relationship started: the profile's `customer_since`, otherwise the first
    /// invoice.
    pub fn customer_since(&self, profile: Option<&CustomerProfile>) -> Option<NaiveDate> {
        profile
            .and_then(|profile| profile.segment.customer_since)
            .or(self.first_invoice_on)
    }
}

/// Computes payment behaviour from a customer's invoice outcomes. Payment dates are taken in
/// UTC.
pub fn payment_behaviour<'a>(
    outcomes: impl IntoIterator<Item = &'a InvoiceOutcome>,
) -> PaymentBehaviour {
    let mut behaviour = PaymentBehaviour::default();
    for outcome in outcomes {
        if let (Some(paid_at), Some(due_on)) = (outcome.paid_at, outcome.due_on) {
            behaviour.paid_invoices += 1;
            let days_late = (paid_at.date_naive() - due_on).num_days().max(0);
            if days_late == 0 {
                behaviour.paid_on_time += 1;
            }
            behaviour.total_days_late = behaviour.total_days_late.saturating_add(days_late);
        }
        if outcome.open {
            behaviour.open_invoices += 1;
            if outcome.overdue {
                behaviour.overdue_invoices += 1;
            }
            let balance = behaviour
                .open_balance
                .entry(outcome.currency.clone())
                .or_insert(0);
            *balance = balance.saturating_add(outcome.amount_due_minor);
        }
        let paid = behaviour
            .lifetime_paid
            .entry(outcome.currency.clone())
            .or_insert(0);
        *paid = paid.saturating_add(outcome.net_paid_minor);
        if let Some(issued_on) = outcome.issued_on {
            if behaviour
                .first_invoice_on
                .is_none_or(|first| issued_on < first)
            {
                behaviour.first_invoice_on = Some(issued_on);
            }
        }
    }
    behaviour.lifetime_paid.retain(|_, paid| *paid != 0);
    behaviour
}
