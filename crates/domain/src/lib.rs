//! The dunning domain of relance, as pure functions over values: no I/O, no clock reads (the
//! date is passed in), no randomness.
//!
//! An invoice's dunning record ([`Invoice`]) keeps the *facts* the billing system reported —
//! the invoice's fields with the version that set each, and ledgers of credit notes, payments,
//! refunds, disputes and payment failures keyed by their own ids — rather than a running state.
//! Its dunning state ([`DunningView`]) is derived from those facts and the date. This is what
//! makes ingestion order-tolerant and idempotent:
//!
//! - applying the same event twice leaves the facts unchanged (ledgers are keyed by id, field
//!   updates are last-writer-wins by version);
//! - events whose business meaning does not depend on order (a payment, a credit note, an
//!   update with its revision) give the same facts in any order, so a payment that arrives
//!   before its invoice, or an old update after a new one, ends in the right state.
//!
//! See `docs/state-machine.md` for the states and transitions.

mod book;
pub mod calendar;
mod customer;
mod invoice;
mod money;
mod version;

pub use book::{scoped, Book, BookEvent, Scoped, StateChange};
pub use customer::{
    apply_customer_event, payment_behaviour, BehaviourChange, Contact, CustomerEvent,
    CustomerFacts, CustomerProfile, InvoiceOutcome, OutcomeColumns, PaymentBehaviour,
    PreferredChannel, RiskLevel, Segment,
};
pub use invoice::{
    apply_invoice_event, ClosedReason, DunningState, DunningView, EscalationTarget, Invoice,
    InvoiceContact, InvoiceEvent, InvoiceFact, PauseReason, RefundKind,
};
pub use money::{Currency, Money, MoneyError, SignedAmount};
pub use version::{Version, Versioned};

/// Why an event cannot be applied. The reason is a stable code used as the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.code())]
pub struct Rejection {
    pub reason: RejectionReason,
    pub detail: String,
}

/// The business reasons an event is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    /// An amount in another currency than the invoice's.
    CurrencyMismatch,
    /// The event's tenant is not the tenant that owns the invoice or customer.
    TenantMismatch,
    /// The event's customer is not the customer the invoice belongs to.
    CustomerMismatch,
    /// Applying the amount would overflow the exact range of amounts.
    AmountOverflow,
}

impl RejectionReason {
    /// The reason code (`currency_mismatch`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::CurrencyMismatch => "currency_mismatch",
            Self::TenantMismatch => "tenant_mismatch",
            Self::CustomerMismatch => "customer_mismatch",
            Self::AmountOverflow => "amount_overflow",
        }
    }

    /// Every reason, for metrics that pre-register their label values.
    pub const ALL: [RejectionReason; 4] = [
        Self::CurrencyMismatch,
        Self::TenantMismatch,
        Self::CustomerMismatch,
        Self::AmountOverflow,
    ];
}

pub(crate) fn reject(reason: RejectionReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}
