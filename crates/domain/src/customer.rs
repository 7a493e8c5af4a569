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
    /// The outcome; `None` before the invoice itself is known.
    pub fn outcome(&self) -> Option<InvoiceOutcome> {
        if self.awaiting_invoice {
            return None;
        }
        Some(InvoiceOutcome {
            currency: self.currency.clone()?,
            issued_on: self.issued_on,
            due_on: self.due_on,
            open: !self.closed,
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

    /// The invoice's outcome for payment behaviour; `None` before the invoice itself is known.
    /// It does not depend on the date (being closed, amounts, payment time and due date do not):
    /// that is what lets the behaviour be kept as sums that each batch adds its change to.
    pub fn outcome(&self, today: NaiveDate) -> Option<InvoiceOutcome> {
        self.outcome_columns(today).outcome()
    }
}

/// How a customer pays, computed from their invoices. Kept as exact integers: ratios and
/// averages are computed when read. Nothing in it depends on the date, so it is stored as sums
/// that each change of an invoice adds its [`BehaviourChange`] to (how many invoices are overdue
/// today is a question for the invoices themselves).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentBehaviour {
    /// Invoices closed as paid (with a known payment time and due date).
    pub paid_invoices: u32,
    /// Of those, paid on or before their due date.
    pub paid_on_time: u32,
    /// Sum over paid invoices of the days between due date and payment (0 when on time).
    pub total_days_late: i64,
    pub open_invoices: u32,
    /// Still owed, per currency (currencies with nothing owed are left out).
    pub open_balance: BTreeMap<Currency, i64>,
    /// Paid minus refunded over all invoices, per currency.
    pub lifetime_paid: BTreeMap<Currency, i64>,
    /// The issue date of the customer's first invoice.
    pub first_invoice_on: Option<NaiveDate>,
}

/// What a change of some of a customer's invoices does to their [`PaymentBehaviour`]: what the
/// invoices count for after it, minus what they counted for before. Changes add up, in any
/// order, so writers of one customer never overwrite each other's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BehaviourChange {
    pub paid_invoices: i64,
    pub paid_on_time: i64,
    pub total_days_late: i64,
    pub open_invoices: i64,
    pub open_balance: BTreeMap<Currency, i64>,
    pub lifetime_paid: BTreeMap<Currency, i64>,
    /// The earliest issue date among the invoices after the change, when it is earlier than
    /// any of theirs before.
    pub earliest_issue: Option<NaiveDate>,
    /// The earliest issue date among the invoices before the change, when the change moved it
    /// later (an issue date corrected): if it was the customer's first, the first must be
    /// found again among all their invoices ([`BehaviourChange::needs_first_issue_recount`]).
    pub withdrawn_issue: Option<NaiveDate>,
}

impl BehaviourChange {
    /// The change from the invoices' outcomes `before` to their outcomes `after` (an invoice
    /// not yet known, or awaiting its issue, is simply absent).
    pub fn between<'a>(
        before: impl IntoIterator<Item = &'a InvoiceOutcome>,
        after: impl IntoIterator<Item = &'a InvoiceOutcome>,
    ) -> Self {
        let mut change = Self::default();
        let mut earliest_before: Option<NaiveDate> = None;
        for outcome in before {
            change.count(outcome, -1);
            earliest_before = earliest(earliest_before, outcome.issued_on);
        }
        let mut earliest_after: Option<NaiveDate> = None;
        for outcome in after {
            change.count(outcome, 1);
            earliest_after = earliest(earliest_after, outcome.issued_on);
        }
        // What was counted before is already in the stored date, which is no later.
        change.earliest_issue =
            earliest_after.filter(|after| earliest_before.is_none_or(|before| after < &before));
        change.withdrawn_issue =
            earliest_before.filter(|before| earliest_after.is_none_or(|after| after > *before));
        change.open_balance.retain(|_, amount| *amount != 0);
        change.lifetime_paid.retain(|_, amount| *amount != 0);
        change
    }

    /// The change that builds `behaviour` from nothing.
    pub fn from_nothing_to(behaviour: &PaymentBehaviour) -> Self {
        Self {
            paid_invoices: i64::from(behaviour.paid_invoices),
            paid_on_time: i64::from(behaviour.paid_on_time),
            total_days_late: behaviour.total_days_late,
            open_invoices: i64::from(behaviour.open_invoices),
            open_balance: behaviour.open_balance.clone(),
            lifetime_paid: behaviour.lifetime_paid.clone(),
            earliest_issue: behaviour.first_invoice_on,
            withdrawn_issue: None,
        }
    }

    /// Whether, added to `stored`, the customer's first issue date must be found again among
    /// all their invoices: the change moved later the date that was the customer's first. The
    /// sums are otherwise exact without reading any other invoice.
    pub fn needs_first_issue_recount(&self, stored: &PaymentBehaviour) -> bool {
        self.withdrawn_issue.is_some() && self.withdrawn_issue == stored.first_invoice_on
    }

    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        self == &Self::default()
    }

    /// `behaviour` with the change added: the same sums the database adds when it stores the
    /// change (`customers::upsert`). The first issue date only moves earlier here; see
    /// [`BehaviourChange::needs_first_issue_recount`].
    pub fn applied_to(&self, behaviour: &PaymentBehaviour) -> PaymentBehaviour {
        let add = |count: u32, change: i64| {
            u32::try_from((i64::from(count) + change).max(0)).unwrap_or(u32::MAX)
        };
        let add_amounts = |stored: &BTreeMap<Currency, i64>, change: &BTreeMap<Currency, i64>| {
            let mut sums = stored.clone();
            for (currency, amount) in change {
                let sum = sums.entry(currency.clone()).or_insert(0);
                *sum = sum.saturating_add(*amount);
            }
            sums.retain(|_, amount| *amount != 0);
            sums
        };
        PaymentBehaviour {
            paid_invoices: add(behaviour.paid_invoices, self.paid_invoices),
            paid_on_time: add(behaviour.paid_on_time, self.paid_on_time),
            total_days_late: behaviour
                .total_days_late
                .saturating_add(self.total_days_late),
            open_invoices: add(behaviour.open_invoices, self.open_invoices),
            open_balance: add_amounts(&behaviour.open_balance, &self.open_balance),
            lifetime_paid: add_amounts(&behaviour.lifetime_paid, &self.lifetime_paid),
            first_invoice_on: earliest(behaviour.first_invoice_on, self.earliest_issue),
        }
    }

    /// Counts `outcome` `times` (1 to add an invoice, -1 to take it away).
    fn count(&mut self, outcome: &InvoiceOutcome, times: i64) {
        if let (Some(paid_at), Some(due_on)) = (outcome.paid_at, outcome.due_on) {
            self.paid_invoices += times;
            let days_late = (paid_at.date_naive() - due_on).num_days().max(0);
            if days_late == 0 {
                self.paid_on_time += times;
            }
            self.total_days_late = self
                .total_days_late
                .saturating_add(days_late.saturating_mul(times));
        }
        if outcome.open {
            self.open_invoices += times;
            let balance = self
                .open_balance
                .entry(outcome.currency.clone())
                .or_insert(0);
            *balance = balance.saturating_add(outcome.amount_due_minor.saturating_mul(times));
        }
        let paid = self
            .lifetime_paid
            .entry(outcome.currency.clone())
            .or_insert(0);
        *paid = paid.saturating_add(outcome.net_paid_minor.saturating_mul(times));
    }
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

fn earliest(first: Option<NaiveDate>, other: Option<NaiveDate>) -> Option<NaiveDate> {
    match (first, other) {
        (Some(first), Some(other)) => Some(first.min(other)),
        (first, other) => first.or(other),
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
    behaviour.open_balance.retain(|_, owed| *owed != 0);
    behaviour.lifetime_paid.retain(|_, paid| *paid != 0);
    behaviour
}
