//! The dunning record of one invoice: facts, the events that add to them, and the dunning
//! state derived from them.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money, SignedAmount};
use crate::version::{Version, Versioned};
use crate::{reject, Rejection, RejectionReason};

/// A contact for one invoice that overrides the customer's collection contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InvoiceContact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A refund or a charge-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    Refund,
    Chargeback,
}

/// Who an invoice was handed over to after the last automatic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationTarget {
    Person,
    Agency,
}

/// Why dunning of an invoice is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Dispute,
    PromiseToPay,
    ManualHold,
    AwaitingApproval,
    PaymentClaimed,
}

impl PauseReason {
    /// The reason as a code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Dispute => "dispute",
            Self::PromiseToPay => "promise_to_pay",
            Self::ManualHold => "manual_hold",
            Self::AwaitingApproval => "awaiting_approval",
            Self::PaymentClaimed => "payment_claimed",
        }
    }
}

/// Why dunning of an invoice is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedReason {
    Paid,
    Voided,
    Credited,
    WrittenOff,
}

impl ClosedReason {
    /// The reason as a code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Voided => "voided",
            Self::Credited => "credited",
            Self::WrittenOff => "written_off",
        }
    }
}

/// What one event says about an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum InvoiceFact {
    /// The billing system issued the invoice.
    Issued {
        number: String,
        issued_on: NaiveDate,
        due_on: NaiveDate,
        total: Money,
        order_reference: Option<String>,
        payment_url: Option<String>,
        contact: Option<InvoiceContact>,
        description: Option<String>,
    },
    /// Some fields changed; `None` means unchanged.
    Updated {
        total: Option<Money>,
        due_on: Option<NaiveDate>,
        contact: Option<InvoiceContact>,
        order_reference: Option<String>,
        payment_url: Option<String>,
    },
    /// The invoice was cancelled.
    Voided,
    /// A credit note reduced the amount due.
    CreditApplied {
        credit_note_id: String,
        amount: Money,
    },
    /// A dispute was opened (`resolved: false`) or resolved.
    Disputed {
        dispute_id: String,
        resolved: bool,
        amount: Option<Money>,
    },
    /// Money was received.
    PaymentSucceeded {
        payment_id: String,
        amount: Money,
        paid_at: DateTime<Utc>,
    },
    /// A payment attempt failed.
    PaymentFailed {
        payment_id: String,
        amount: Money,
        failed_at: DateTime<Utc>,
        failure_code: String,
        recurring: bool,
        attempt: u32,
        next_retry_at: Option<DateTime<Utc>>,
    },
    /// Money went back to the customer.
    Refunded {
        refund_id: String,
        payment_id: String,
        amount: Money,
        kind: RefundKind,
        refunded_at: DateTime<Utc>,
    },
    /// The customer promised to pay by `promised_on`; dunning waits `grace_days` more.
    PromisedToPay {
        promised_on: NaiveDate,
        grace_days: u32,
    },
    /// A promise was withdrawn or superseded by a person.
    PromiseCancelled,
    /// A person held dunning, until a date or until released.
    HoldPlaced {
        until: Option<NaiveDate>,
        by: String,
        note: Option<String>,
    },
    HoldReleased,
    /// A step waits for a person's approval.
    ApprovalRequested {
        step: String,
    },
    ApprovalSettled,
    /// The customer says it is already paid; dunning waits until someone checks.
    PaymentClaimed {
        reference: Option<String>,
    },
    PaymentClaimSettled,
    /// Handed over after the last automatic step.
    Escalated {
        to: EscalationTarget,
    },
    /// A person decided the debt will not be collected.
    WrittenOff {
        by: String,
    },
}

impl InvoiceFact {
    /// Whether the fact can change what the invoice counts for in its customer's payment
    /// behaviour (being issued, closed, amounts, payments). relance's own facts (promises,
    /// holds, approvals, payment claims, escalations) and disputes only pause or route dunning;
    /// a property test holds them to it.
    pub fn changes_payment_behaviour(&self) -> bool {
        match self {
            Self::Issued { .. }
            | Self::Updated { .. }
            | Self::Voided
            | Self::CreditApplied { .. }
            | Self::PaymentSucceeded { .. }
            | Self::PaymentFailed { .. }
            | Self::Refunded { .. }
            | Self::WrittenOff { .. } => true,
            Self::Disputed { .. }
            | Self::PromisedToPay { .. }
            | Self::PromiseCancelled
            | Self::HoldPlaced { .. }
            | Self::HoldReleased
            | Self::ApprovalRequested { .. }
            | Self::ApprovalSettled
            | Self::PaymentClaimed { .. }
            | Self::PaymentClaimSettled
            | Self::Escalated { .. } => false,
        }
    }

    /// A short name of the fact, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Issued { .. } => "issued",
            Self::Updated { .. } => "updated",
            Self::Voided => "voided",
            Self::CreditApplied { .. } => "credit_applied",
            Self::Disputed { .. } => "disputed",
            Self::PaymentSucceeded { .. } => "payment_succeeded",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::Refunded { .. } => "refunded",
            Self::PromisedToPay { .. } => "promised_to_pay",
            Self::PromiseCancelled => "promise_cancelled",
            Self::HoldPlaced { .. } => "hold_placed",
            Self::HoldReleased => "hold_released",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalSettled => "approval_settled",
            Self::PaymentClaimed { .. } => "payment_claimed",
            Self::PaymentClaimSettled => "payment_claim_settled",
            Self::Escalated { .. } => "escalated",
            Self::WrittenOff { .. } => "written_off",
        }
    }

    /// Whether the fact sets the invoice total (and so may reopen a closed invoice).
    pub fn sets_total(&self) -> bool {
        matches!(
            self,
            Self::Issued { .. } | Self::Updated { total: Some(_), .. }
        )
    }
}

/// An event about one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceEvent {
    pub event_id: String,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_id: String,
    /// When it happened in its source.
    pub time: DateTime<Utc>,
    /// The invoice's revision in the source system, if it sends them.
    pub revision: Option<i64>,
    pub fact: InvoiceFact,
}

impl InvoiceEvent {
    fn version(&self) -> Version {
        Version::new(self.revision, self.time, self.event_id.clone())
    }
}

/// A money movement in a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub amount: Money,
    /// When it happened (payments: paid_at; credits: the event time).
    pub at: DateTime<Utc>,
    pub version: Version,
}

/// A refund or charge-back of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    pub payment_id: String,
    pub amount: Money,
    pub kind: RefundKind,
    pub at: DateTime<Utc>,
    pub version: Version,
}

/// A dispute. Resolution is final: a resolved dispute stays resolved whatever arrives later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeEntry {
    pub resolved: bool,
    /// The disputed amount, from the newest event that gave one.
    pub amount: Option<Versioned<Money>>,
    /// The newest event about the dispute.
    pub version: Version,
}

/// The latest failure of one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureEntry {
    pub amount: Money,
    pub failed_at: DateTime<Utc>,
    pub failure_code: String,
    pub recurring: bool,
    pub attempt: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub version: Version,
}

/// A promise to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    pub promised_on: NaiveDate,
    pub grace_days: u32,
}

/// A manual hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub until: Option<NaiveDate>,
    pub by: String,
    pub note: Option<String>,
}

/// Everything known about one invoice's dunning: the facts, not a running state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub tenant: String,
    pub invoice_id: String,
    pub customer_id: String,
    /// The version of the `issued` event, once it has arrived.
    pub issued: Option<Version>,
    pub number: Option<Versioned<String>>,
    pub issued_on: Option<Versioned<NaiveDate>>,
    pub due_on: Option<Versioned<NaiveDate>>,
    pub total: Option<Versioned<Money>>,
    pub order_reference: Option<Versioned<Option<String>>>,
    pub payment_url: Option<Versioned<Option<String>>>,
    pub contact: Option<Versioned<Option<InvoiceContact>>>,
    pub description: Option<Versioned<Option<String>>>,
    pub credits: BTreeMap<String, LedgerEntry>,
    pub payments: BTreeMap<String, LedgerEntry>,
    pub refunds: BTreeMap<String, RefundEntry>,
    pub disputes: BTreeMap<String, DisputeEntry>,
    pub payment_failures: BTreeMap<String, FailureEntry>,
    pub voided: Option<Version>,
    pub written_off: Option<Versioned<String>>,
    pub promise: Option<Versioned<Option<Promise>>>,
    pub hold: Option<Versioned<Option<Hold>>>,
    pub approval: Option<Versioned<Option<String>>>,
    pub payment_claim: Option<Versioned<Option<Option<String>>>>,
    pub escalation: Option<Versioned<EscalationTarget>>,
}

/// The dunning state of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum DunningState {
    /// Events about the invoice arrived before the invoice itself; nothing is owed yet.
    AwaitingInvoice,
    NotDue,
    Overdue,
    /// Some money was received, some is still due.
    PartiallyPaid,
    Paused {
        reason: PauseReason,
        /// When dunning resumes by itself, if it does.
        until: Option<NaiveDate>,
    },
    Escalated {
        to: EscalationTarget,
    },
    Closed {
        reason: ClosedReason,
    },
}

impl DunningState {
    /// The state's name (`not_due`, `overdue`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingInvoice => "awaiting_invoice",
            Self::NotDue => "not_due",
            Self::Overdue => "overdue",
            Self::PartiallyPaid => "partially_paid",
            Self::Paused { .. } => "paused",
            Self::Escalated { .. } => "escalated",
            Self::Closed { .. } => "closed",
        }
    }

    /// Whether dunning of the invoice is over.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }
}

/// What dunning needs to know about an invoice on a given day, derived from its facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DunningView {
    pub state: DunningState,
    /// The invoice's currency: its total's, or before the invoice is known, its first amount's.
    pub currency: Option<Currency>,
    pub total_minor: i64,
    pub credited_minor: i64,
    pub paid_minor: i64,
    pub refunded_minor: i64,
    /// `max(total − credited − paid + refunded, 0)`.
    pub amount_due_minor: i64,
    /// `max(−(total − credited − paid + refunded), 0)`: money received beyond the total.
    pub overpaid_minor: i64,
    pub due_on: Option<NaiveDate>,
    /// When the last payment arrived, once the invoice is closed as paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// Amounts in another currency than the invoice's, left out of the sums.
    pub conflicting_amounts: u32,
}

fn saturating_i64(value: SignedAmount) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

impl Invoice {
    /// An invoice known only by its identity, before any fact.
    pub fn new(tenant: &str, invoice_id: &str, customer_id: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            invoice_id: invoice_id.to_string(),
            customer_id: customer_id.to_string(),
            issued: None,
            number: None,
            issued_on: None,
            due_on: None,
            total: None,
            order_reference: None,
            payment_url: None,
            contact: None,
            description: None,
            credits: BTreeMap::new(),
            payments: BTreeMap::new(),
            refunds: BTreeMap::new(),
            disputes: BTreeMap::new(),
            payment_failures: BTreeMap::new(),
            voided: None,
            written_off: None,
            promise: None,
            hold: None,
            approval: None,
            payment_claim: None,
            escalation: None,
        }
    }

    /// The invoice's currency: its total's, otherwise the first amount seen.
    pub fn currency(&self) -> Option<&Currency> {
        if let Some(total) = &self.total {
            return Some(&total.value.currency);
        }
        let mut earliest: Option<(&Version, &Currency)> = None;
        let entries = self
            .credits
            .values()
            .chain(self.payments.values())
            .map(|entry| (&entry.version, &entry.amount.currency))
            .chain(
                self.refunds
                    .values()
                    .map(|entry| (&entry.version, &entry.amount.currency)),
            );
        for (version, currency) in entries {
            if earliest.is_none_or(|(best, _)| version < best) {
                earliest = Some((version, currency));
            }
        }
        earliest.map(|(_, currency)| currency)
    }

    /// The sums of the ledgers in the invoice's currency, and how many amounts were left out.
    fn sums(&self) -> (SignedAmount, SignedAmount, SignedAmount, u32) {
        let currency = self.currency();
        let mut conflicting = 0u32;
        let mut sum = |amounts: &mut dyn Iterator<Item = &Money>| -> SignedAmount {
            let mut total: SignedAmount = 0;
            for amount in amounts {
                if Some(&amount.currency) == currency {
                    total += SignedAmount::from(amount.amount_minor);
                } else {
                    conflicting += 1;
                }
            }
            total
        };
        let credited = sum(&mut self.credits.values().map(|entry| &entry.amount));
        let paid = sum(&mut self.payments.values().map(|entry| &entry.amount));
        let refunded = sum(&mut self.refunds.values().map(|entry| &entry.amount));
        (credited, paid, refunded, conflicting)
    }

    /// How many amounts in another currency than the invoice's are kept but left out of its
    /// sums (the view's `conflicting_amounts`, which does not depend on the date).
    #[must_use]
    pub fn conflicting_amounts(&self) -> u32 {
        self.sums().3
    }

    /// The dunning view of the invoice on `today` (a date in the customer's time zone).
    pub fn view(&self, today: NaiveDate) -> DunningView {
        let total: SignedAmount = self
            .total
            .as_ref()
            .map_or(0, |total| SignedAmount::from(total.value.amount_minor));
        let (credited, paid, refunded, conflicting) = self.sums();
        let balance = total - credited - paid + refunded;
        let due_on = self.due_on.as_ref().map(|due| due.value);
        let closed_by_money = self.issued.is_some() && balance <= 0;
        let paid_at = if closed_by_money && credited < total.max(1) {
            self.payments.values().map(|entry| entry.at).max()
        } else {
            None
        };
        DunningView {
            state: self.state(today, balance, credited, total, paid - refunded),
            currency: self.currency().cloned(),
            total_minor: saturating_i64(total),
            credited_minor: saturating_i64(credited),
            paid_minor: saturating_i64(paid),
            refunded_minor: saturating_i64(refunded),
            amount_due_minor: saturating_i64(balance.max(0)),
            overpaid_minor: saturating_i64((-balance).max(0)),
            due_on,
            paid_at,
            conflicting_amounts: conflicting,
        }
    }

    /// The state, by precedence: closed, paused (a dispute first), escalated, partially paid,
    /// overdue or not due.
    fn state(
        &self,
        today: NaiveDate,
        balance: SignedAmount,
        credited: SignedAmount,
        total: SignedAmount,
        net_paid: SignedAmount,
    ) -> DunningState {
        if self.voided.is_some() {
            return DunningState::Closed {
                reason: ClosedReason::Voided,
            };
        }
        if self.written_off.is_some() {
            return DunningState::Closed {
                reason: ClosedReason::WrittenOff,
            };
        }
        if self.issued.is_none() {
            return DunningState::AwaitingInvoice;
        }
        if balance <= 0 {
            let reason = if credited > 0 && credited >= total {
                ClosedReason::Credited
            } else {
                ClosedReason::Paid
            };
            return DunningState::Closed { reason };
        }
        if let Some(pause) = self.active_pause(today) {
            return pause;
        }
        if let Some(escalation) = &self.escalation {
            return DunningState::Escalated {
                to: escalation.value,
            };
        }
        if net_paid > 0 {
            return DunningState::PartiallyPaid;
        }
        match self.due_on.as_ref() {
            Some(due) if today > due.value => DunningState::Overdue,
            _ => DunningState::NotDue,
        }
    }

    fn active_pause(&self, today: NaiveDate) -> Option<DunningState> {
        let paused = |reason, until| Some(DunningState::Paused { reason, until });
        if self.disputes.values().any(|dispute| !dispute.resolved) {
            return paused(PauseReason::Dispute, None);
        }
        if let Some(Some(hold)) = self.hold.as_ref().map(|hold| &hold.value) {
            if hold.until.is_none_or(|until| today <= until) {
                return paused(PauseReason::ManualHold, hold.until);
            }
        }
        if let Some(Some(_)) = self.payment_claim.as_ref().map(|claim| &claim.value) {
            return paused(PauseReason::PaymentClaimed, None);
        }
        if let Some(Some(promise)) = self.promise.as_ref().map(|promise| &promise.value) {
            let resumes_after = promise
                .promised_on
                .checked_add_days(Days::new(u64::from(promise.grace_days)))
                .unwrap_or(promise.promised_on);
            if today <= resumes_after {
                return paused(PauseReason::PromiseToPay, Some(resumes_after));
            }
        }
        if let Some(Some(_)) = self.approval.as_ref().map(|approval| &approval.value) {
            return paused(PauseReason::AwaitingApproval, None);
        }
        None
    }

    fn check_currency(&self, amount: &Money, what: &str) -> Result<(), Rejection> {
        match &self.total {
            Some(total) if total.value.currency != amount.currency => Err(reject(
                RejectionReason::CurrencyMismatch,
                format!(
                    "{what} is in {} but invoice {} is in {}",
                    amount.currency, self.invoice_id, total.value.currency
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The invoice's own total is authoritative for its currency: a total in another currency
    /// than an earlier total is refused, while amounts that arrived before any total in another
    /// currency are kept but left out of the sums (`conflicting_amounts`).
    fn check_new_total(&self, total: &Money) -> Result<(), Rejection> {
        match self.total.as_ref().map(|total| &total.value.currency) {
            Some(currency) if *currency != total.currency => Err(reject(
                RejectionReason::CurrencyMismatch,
                format!(
                    "the total of invoice {} is in {} but the invoice is in {currency}",
                    self.invoice_id, total.currency
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Applies `event` to the invoice's facts (`None` for an invoice not seen before).
///
/// # Errors
/// [`Rejection`] when the event belongs to another tenant or customer than the invoice, is in
/// another currency, or would overflow the exact range of amounts. The facts are unchanged then.
pub fn apply_invoice_event(
    current: Option<&Invoice>,
    event: &InvoiceEvent,
) -> Result<Invoice, Rejection> {
    let mut invoice = match current {
        Some(invoice) => {
            if invoice.tenant != event.tenant {
                return Err(reject(
                    RejectionReason::TenantMismatch,
                    format!(
                        "invoice {} belongs to tenant {}, not {}",
                        invoice.invoice_id, invoice.tenant, event.tenant
                    ),
                ));
            }
            if invoice.customer_id != event.customer_id {
                return Err(reject(
                    RejectionReason::CustomerMismatch,
                    format!(
                        "invoice {} belongs to customer {}, not {}",
                        invoice.invoice_id, invoice.customer_id, event.customer_id
                    ),
                ));
            }
            invoice.clone()
        }
        None => Invoice::new(&event.tenant, &event.invoice_id, &event.customer_id),
    };
    let version = event.version();
    match &event.fact {
        InvoiceFact::Issued {
            number,
            issued_on,
            due_on,
            total,
            order_reference,
            payment_url,
            contact,
            description,
        } => {
            invoice.check_new_total(total)?;
            if invoice
                .issued
                .as_ref()
                .is_none_or(|issued| version > *issued)
            {
                invoice.issued = Some(version.clone());
            }
            Versioned::merge(&mut invoice.number, number.clone(), &version);
            Versioned::merge(&mut invoice.issued_on, *issued_on, &version);
            Versioned::merge(&mut invoice.due_on, *due_on, &version);
            Versioned::merge(&mut invoice.total, total.clone(), &version);
            Versioned::merge(
                &mut invoice.order_reference,
                order_reference.clone(),
                &version,
            );
            Versioned::merge(&mut invoice.payment_url, payment_url.clone(), &version);
            Versioned::merge(&mut invoice.contact, contact.clone(), &version);
            Versioned::merge(&mut invoice.description, description.clone(), &version);
        }
        InvoiceFact::Updated {
            total,
            due_on,
            contact,
            order_reference,
            payment_url,
        } => {
            if let Some(total) = total {
                invoice.check_new_total(total)?;
                Versioned::merge(&mut invoice.total, total.clone(), &version);
            }
            if let Some(due_on) = due_on {
                Versioned::merge(&mut invoice.due_on, *due_on, &version);
            }
            if let Some(contact) = contact {
                Versioned::merge(&mut invoice.contact, Some(contact.clone()), &version);
            }
            if let Some(reference) = order_reference {
                Versioned::merge(
                    &mut invoice.order_reference,
                    Some(reference.clone()),
                    &version,
                );
            }
            if let Some(url) = payment_url {
                Versioned::merge(&mut invoice.payment_url, Some(url.clone()), &version);
            }
        }
        InvoiceFact::Voided => {
            // Voiding is final: keep the earliest void so a replay changes nothing.
            if invoice
                .voided
                .as_ref()
                .is_none_or(|voided| version < *voided)
            {
                invoice.voided = Some(version);
            }
        }
        InvoiceFact::CreditApplied {
            credit_note_id,
            amount,
        } => {
            invoice.check_currency(amount, "the credit note")?;
            merge_entry(
                &mut invoice.credits,
                credit_note_id,
                LedgerEntry {
                    amount: amount.clone(),
                    at: event.time,
                    version,
                },
            );
        }
        InvoiceFact::Disputed {
            dispute_id,
            resolved,
            amount,
        } => {
            let entry = invoice
                .disputes
                .entry(dispute_id.clone())
                .or_insert_with(|| DisputeEntry {
                    resolved: false,
                    amount: None,
                    version: version.clone(),
                });
            // Resolution is final, so "opened" arriving after "resolved" changes nothing.
            entry.resolved |= *resolved;
            if let Some(amount) = amount {
                Versioned::merge(&mut entry.amount, amount.clone(), &version);
            }
            if version > entry.version {
                entry.version = version;
            }
        }
        InvoiceFact::PaymentSucceeded {
            payment_id,
            amount,
            paid_at,
        } => {
            invoice.check_currency(amount, "the payment")?;
            merge_entry(
                &mut invoice.payments,
                payment_id,
                LedgerEntry {
                    amount: amount.clone(),
                    at: *paid_at,
                    version,
                },
            );
        }
        InvoiceFact::PaymentFailed {
            payment_id,
            amount,
            failed_at,
            failure_code,
            recurring,
            attempt,
            next_retry_at,
        } => {
            invoice.check_currency(amount, "the failed payment")?;
            let newer = invoice
                .payment_failures
                .get(payment_id)
                .is_none_or(|existing| version > existing.version);
            if newer {
                invoice.payment_failures.insert(
                    payment_id.clone(),
                    FailureEntry {
                        amount: amount.clone(),
                        failed_at: *failed_at,
                        failure_code: failure_code.clone(),
                        recurring: *recurring,
                        attempt: *attempt,
                        next_retry_at: *next_retry_at,
                        version,
                    },
                );
            }
        }
        InvoiceFact::Refunded {
            refund_id,
            payment_id,
            amount,
            kind,
            refunded_at,
        } => {
            invoice.check_currency(amount, "the refund")?;
            let newer = invoice
                .refunds
                .get(refund_id)
                .is_none_or(|existing| version > existing.version);
            if newer {
                invoice.refunds.insert(
                    refund_id.clone(),
                    RefundEntry {
                        payment_id: payment_id.clone(),
                        amount: amount.clone(),
                        kind: *kind,
                        at: *refunded_at,
                        version,
                    },
                );
            }
        }
        InvoiceFact::PromisedToPay {
            promised_on,
            grace_days,
        } => Versioned::merge(
            &mut invoice.promise,
            Some(Promise {
                promised_on: *promised_on,
                grace_days: *grace_days,
            }),
            &version,
        ),
        InvoiceFact::PromiseCancelled => Versioned::merge(&mut invoice.promise, None, &version),
        InvoiceFact::HoldPlaced { until, by, note } => Versioned::merge(
            &mut invoice.hold,
            Some(Hold {
                until: *until,
                by: by.clone(),
                note: note.clone(),
            }),
            &version,
        ),
        InvoiceFact::HoldReleased => Versioned::merge(&mut invoice.hold, None, &version),
        InvoiceFact::ApprovalRequested { step } => {
            Versioned::merge(&mut invoice.approval, Some(step.clone()), &version);
        }
        InvoiceFact::ApprovalSettled => Versioned::merge(&mut invoice.approval, None, &version),
        InvoiceFact::PaymentClaimed { reference } => {
            Versioned::merge(
                &mut invoice.payment_claim,
                Some(reference.clone()),
                &version,
            );
        }
        InvoiceFact::PaymentClaimSettled => {
            Versioned::merge(&mut invoice.payment_claim, None, &version);
        }
        InvoiceFact::Escalated { to } => Versioned::merge(&mut invoice.escalation, *to, &version),
        InvoiceFact::WrittenOff { by } => {
            // Final, like voiding: the earliest decision stands.
            let earlier = invoice
                .written_off
                .as_ref()
                .is_none_or(|written_off| version < written_off.version);
            if earlier {
                invoice.written_off = Some(Versioned {
                    value: by.clone(),
                    version,
                });
            }
        }
    }
    check_amounts_fit(&invoice)?;
    Ok(invoice)
}

/// Keeps the newer of two entries with the same id.
fn merge_entry(ledger: &mut BTreeMap<String, LedgerEntry>, id: &str, entry: LedgerEntry) {
    let newer = ledger
        .get(id)
        .is_none_or(|existing| entry.version > existing.version);
    if newer {
        ledger.insert(id.to_string(), entry);
    }
}

/// Sums must stay within the 64-bit range they are stored and published in.
fn check_amounts_fit(invoice: &Invoice) -> Result<(), Rejection> {
    let (credited, paid, refunded) = {
        let (credited, paid, refunded, _) = invoice.sums();
        (credited, paid, refunded)
    };
    let total = invoice
        .total
        .as_ref()
        .map_or(0, |total| SignedAmount::from(total.value.amount_minor));
    let limit = SignedAmount::from(i64::MAX);
    let balance = total - credited - paid + refunded;
    if [credited, paid, refunded, balance, -balance]
        .iter()
        .any(|sum| *sum > limit)
    {
        return Err(reject(
            RejectionReason::AmountOverflow,
            format!(
                "the amounts of invoice {} would exceed {limit} minor units",
                invoice.invoice_id
            ),
        ));
    }
    Ok(())
}
