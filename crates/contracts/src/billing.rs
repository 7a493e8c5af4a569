//! Input events: what a billing system publishes on `billing.invoices`, `billing.payments` and
//! `billing.customers`, keyed by customer id.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::common::{
    CountryCode, Email, Id, InvoiceContact, Locale, Money, Name, PaymentMethod, Phone, Reference,
    Revision, Text, TimeZoneName, Url,
};
use crate::envelope::EventPayload;

macro_rules! payload {
    ($type:ty, $event_type:literal, $version:literal) => {
        impl EventPayload for $type {
            const EVENT_TYPE: &'static str = $event_type;
            const SCHEMA_VERSION: u32 = $version;
        }
    };
}
pub(crate) use payload;

/// `billing.invoice.issued` v1: the billing system issued an invoice. Starts its dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct InvoiceIssuedV1 {
    pub invoice_id: Id,
    pub customer_id: Id,
    /// The invoice number printed on the invoice.
    pub number: crate::common::InvoiceNumber,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub issued_on: NaiveDate,
    /// The due date the reminder schedule is computed from.
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub due_on: NaiveDate,
    /// The amount invoiced, taxes included.
    pub total: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_reference: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_url: Option<Url>,
    /// Overrides the customer's collection contact for this invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<InvoiceContact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
}
payload!(InvoiceIssuedV1, "billing.invoice.issued", 1);

/// `billing.invoice.updated` v1: some fields of an issued invoice changed; absent fields are
/// unchanged. At least one of the optional fields is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[cfg_attr(test, proptest(filter = "InvoiceUpdatedV1::changes_something"))]
#[serde(deny_unknown_fields)]
pub struct InvoiceUpdatedV1 {
    pub invoice_id: Id,
    pub customer_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::date())")
    )]
    pub due_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<InvoiceContact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_reference: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_url: Option<Url>,
}
payload!(InvoiceUpdatedV1, "billing.invoice.updated", 1);

impl InvoiceUpdatedV1 {
    /// Whether the update carries at least one change, as the contract requires.
    pub fn changes_something(&self) -> bool {
        self.total.is_some()
            || self.due_on.is_some()
            || self.contact.is_some()
            || self.order_reference.is_some()
            || self.payment_url.is_some()
    }
}

/// `billing.invoice.voided` v1: the invoice was cancelled; nothing is owed on it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct InvoiceVoidedV1 {
    pub invoice_id: Id,
    pub customer_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}
payload!(InvoiceVoidedV1, "billing.invoice.voided", 1);

/// `billing.credit_note.applied` v1: a credit note reduced the amount due on an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct CreditNoteAppliedV1 {
    pub credit_note_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    /// The amount credited to the invoice.
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}
payload!(CreditNoteAppliedV1, "billing.credit_note.applied", 1);

/// Whether a dispute is open or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Opened,
    Resolved,
}

/// How a dispute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum DisputeResolution {
    InFavourOfMerchant,
    InFavourOfCustomer,
    Withdrawn,
}

/// `billing.invoice.disputed` v1: a dispute on the invoice was opened or resolved in the
/// billing system. An open dispute takes the invoice out of automatic dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct InvoiceDisputedV1 {
    pub dispute_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    pub status: DisputeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    /// The disputed amount, when not the whole invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// How the dispute ended; present when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<DisputeResolution>,
}
payload!(InvoiceDisputedV1, "billing.invoice.disputed", 1);

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum PaymentChannel {
    Card,
    DirectDebit,
    BankTransfer,
    Check,
    Cash,
    Wallet,
    Other,
}

/// `billing.payment.succeeded` v1: money was received for an invoice, in full or in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentSucceededV1 {
    pub payment_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    /// The amount applied to the invoice.
    pub amount: Money,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub paid_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PaymentChannel>,
    /// The payer's reference, for example a bank transfer's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}
payload!(PaymentSucceededV1, "billing.payment.succeeded", 1);

/// `billing.payment.failed` v1: a payment attempt failed, typically a declined recurring card
/// charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentFailedV1 {
    pub payment_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    pub amount: Money,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub failed_at: DateTime<Utc>,
    /// The billing system's decline code (`card_declined`, `insufficient_funds`,
    /// `expired_card`).
    pub failure_code: crate::common::Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<Text>,
    /// Whether the charge was an automatic recurring one.
    pub recurring: bool,
    /// Which of the billing system's own attempts this was.
    #[cfg_attr(test, proptest(strategy = "1u32..=1000"))]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::instant())")
    )]
    pub next_retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_payment_method_url: Option<Url>,
}
payload!(PaymentFailedV1, "billing.payment.failed", 1);

/// Whether money went back by a refund or a charge-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    Refund,
    Chargeback,
}

/// `billing.payment.refunded` v1: money from an earlier payment went back to the customer.
/// The invoice is owed again by that amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentRefundedV1 {
    pub refund_id: Id,
    pub payment_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    pub amount: Money,
    pub kind: RefundKind,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub refunded_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}
payload!(PaymentRefundedV1, "billing.payment.refunded", 1);

/// The collection contact of a customer: the one person reminders are addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct CustomerContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
}

/// A customer's risk of not paying, as the business rates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// The channel a customer prefers to be contacted through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum PreferredChannel {
    Email,
    Sms,
    PhoneCall,
    Letter,
}

/// Attributes the dunning policy segments customers by.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct SegmentAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<RiskLevel>,
    /// Start of the business relationship.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::date())")
    )]
    pub customer_since: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::tags())")
    )]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_channel: Option<PreferredChannel>,
}

/// `billing.customer.upserted` v1: the customer's full profile as the billing system knows it
/// now (a replacement, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct CustomerUpsertedV1 {
    pub customer_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// The customer's legal (company or person) name.
    pub legal_name: Name,
    pub contact: CustomerContact,
    pub locale: Locale,
    pub timezone: TimeZoneName,
    pub country: CountryCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentAttributes>,
}
payload!(CustomerUpsertedV1, "billing.customer.upserted", 1);
