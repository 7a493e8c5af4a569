//! Commands relance's scheduler publishes: reminders for the sender (`relance.reminders`) and
//! tasks for a person or a CRM (`relance.tasks`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::billing::payload;
use crate::common::{
    Code, Id, InvoiceNumber, Locale, Money, Name, PaymentMethod, Recipient, Reference, StepRef,
    TemplateRef, Text, TimeZoneName, Url,
};
use crate::envelope::EventPayload;

/// The channels a reminder command can use; calls, letters and notices are tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    Email,
    Sms,
}

/// One invoice in a reminder, with what the customer needs to recognise and pay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderInvoice {
    pub invoice_id: Id,
    pub number: InvoiceNumber,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub issued_on: NaiveDate,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub due_on: NaiveDate,
    pub total: Money,
    pub amount_due: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_reference: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_url: Option<Url>,
}

/// The policy a reminder was planned by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub id: Code,
    #[cfg_attr(test, proptest(strategy = "1u32..=100_000"))]
    pub version: u32,
}

/// The failed payment a payment-failure reminder is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentFailure {
    pub payment_id: Id,
    pub failure_code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_payment_method_url: Option<Url>,
}

/// Who approved a reminder before it went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub approved_by: Name,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub approved_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// `relance.reminder.send` v1: deliver one reminder about one or several invoices of one
/// customer through one channel. The sender re-checks the invoices before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct SendReminderV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    /// Stable key of this reminder (tenant, invoices, step, attempt).
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::idempotency_key()"))]
    pub idempotency_key: String,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "1u32..=1000"))]
    pub attempt: u32,
    pub channel: MessageChannel,
    pub recipient: Recipient,
    pub locale: Locale,
    pub timezone: TimeZoneName,
    pub segment: Code,
    pub step: StepRef,
    pub template: TemplateRef,
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::prelude::any::<ReminderInvoice>(), 1..4)"
        )
    )]
    pub invoices: Vec<ReminderInvoice>,
    /// The date the customer is asked to pay or answer by.
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub response_deadline: NaiveDate,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub scheduled_for: DateTime<Utc>,
    pub policy: PolicyRef,
    /// Present when the step was triggered by a failed payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_failure: Option<PaymentFailure>,
    /// Present when a person approved the reminder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}
payload!(SendReminderV1, "relance.reminder.send", 1);

/// The kinds of work relance hands to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    PhoneCall,
    Letter,
    FormalNotice,
    CollectionAgency,
    VerifyPaymentClaim,
    ReviewDispute,
    PaymentPlanRequest,
    ManualReview,
}

/// How soon a task should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum TaskPriority {
    Low,
    Normal,
    High,
}

/// `relance.task.create` v1: a piece of dunning work for a person or a CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct CreateTaskV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub task_id: Uuid,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::idempotency_key()"))]
    pub idempotency_key: String,
    pub customer_id: Id,
    pub kind: TaskKind,
    pub priority: TaskPriority,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::date()"))]
    pub due_on: NaiveDate,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::invoice_ids()"))]
    pub invoice_ids: Vec<Id>,
    /// The total still due, one entry per currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::option::of(proptest::collection::vec(proptest::prelude::any::<Money>(), 0..3))"
        )
    )]
    pub amount_due: Option<Vec<Money>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Recipient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    /// What the customer wrote, for tasks that come from a customer action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_note: Option<Text>,
    /// Present when a person approved the task; their note is for whoever does it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}
payload!(CreateTaskV1, "relance.task.create", 1);
