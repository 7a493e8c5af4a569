//! Dunning events relance publishes on `relance.events`: state changes, what happened to each
//! reminder, how the customer interacted, and which reminders payments are credited to.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::billing::payload;
use crate::common::{
    Channel, Code, Id, InteractionClassification, Money, Reference, StepRef, TemplateRef, Text,
};
use crate::envelope::EventPayload;

/// The dunning state of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum DunningStateName {
    NotDue,
    Overdue,
    PartiallyPaid,
    Paused,
    Escalated,
    Closed,
}

/// Why dunning of an invoice is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Dispute,
    PromiseToPay,
    ManualHold,
    AwaitingApproval,
    PaymentClaimed,
}

/// A pause and when it ends by itself, if it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub reason: PauseReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::date())")
    )]
    pub until: Option<NaiveDate>,
}

/// Why an invoice's dunning is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ClosedReason {
    Paid,
    Voided,
    Credited,
    WrittenOff,
}

/// The event that caused a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct Cause {
    pub event_id: Id,
    #[cfg_attr(test, proptest(strategy = "\"[a-z]{1,10}(\\\\.[a-z_]{1,10}){1,3}\""))]
    pub event_type: String,
}

/// `relance.dunning.state_changed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct StateChangedV1 {
    pub invoice_id: Id,
    pub customer_id: Id,
    /// The state before; absent for a new invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DunningStateName>,
    pub to: DunningStateName,
    pub amount_due: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<ClosedReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}
payload!(StateChangedV1, "relance.dunning.state_changed", 1);

/// `relance.dunning.reminder_sent` v1: the audit record of a reminder handed to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderSentV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::idempotency_key()"))]
    pub idempotency_key: String,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::invoice_ids()"))]
    pub invoice_ids: Vec<Id>,
    pub channel: Channel,
    pub provider: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(\"[a-zA-Z0-9-]{1,64}\")")
    )]
    pub provider_message_id: Option<String>,
    /// The email address or phone number it was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(\"[a-z]{1,20}@[a-z]{1,20}\\\\.fr\")")
    )]
    pub recipient_address: Option<String>,
    pub segment: Code,
    pub step: StepRef,
    pub template: TemplateRef,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub sent_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(\"[^\\\\x00-\\\\x1f]{0,80}\")")
    )]
    pub subject: Option<String>,
    /// SHA-256 of the rendered body, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, proptest(strategy = "proptest::option::of(\"[0-9a-f]{64}\")"))]
    pub body_sha256: Option<String>,
}
payload!(ReminderSentV1, "relance.dunning.reminder_sent", 1);

/// `relance.dunning.reminder_skipped` v1: a reminder deliberately not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderSkippedV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::idempotency_key()"))]
    pub idempotency_key: String,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::invoice_ids()"))]
    pub invoice_ids: Vec<Id>,
    /// Why, for example `invoice_paid` or `frequency_cap`.
    pub reason: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text>,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub skipped_at: DateTime<Utc>,
}
payload!(ReminderSkippedV1, "relance.dunning.reminder_skipped", 1);

/// `relance.dunning.reminder_failed` v1: a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderFailedV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::idempotency_key()"))]
    pub idempotency_key: String,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::invoice_ids()"))]
    pub invoice_ids: Vec<Id>,
    pub channel: Channel,
    pub provider: Code,
    pub error_code: Code,
    pub error_message: Text,
    /// False when the provider rejected the message for good.
    pub retryable: bool,
    #[cfg_attr(test, proptest(strategy = "1u32..=1000"))]
    pub attempt: u32,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub failed_at: DateTime<Utc>,
}
payload!(ReminderFailedV1, "relance.dunning.reminder_failed", 1);

/// Where an open or a click was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum InteractionSource {
    TrackingPixel,
    TrackedLink,
    ProviderWebhook,
}

/// `relance.dunning.reminder_opened` v1. Never used to decide anything about dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderOpenedV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub opened_at: DateTime<Utc>,
    pub classification: InteractionClassification,
    /// Why it was classified as machine-made (`apple_mail_privacy_protection`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_reason: Option<Code>,
    pub source: InteractionSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Code>,
}
payload!(ReminderOpenedV1, "relance.dunning.reminder_opened", 1);

/// Which link of a reminder was followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Pay,
    AlreadyPaid,
    Dispute,
    PromiseToPay,
    PaymentPlan,
    Other,
}

/// `relance.dunning.reminder_clicked` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct ReminderClickedV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    pub customer_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<Id>,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub clicked_at: DateTime<Utc>,
    pub link: LinkKind,
    pub classification: InteractionClassification,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_reason: Option<Code>,
    pub source: InteractionSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Code>,
}
payload!(ReminderClickedV1, "relance.dunning.reminder_clicked", 1);

/// What a customer did on an action page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum CustomerActionKind {
    AlreadyPaid,
    Dispute,
    PromiseToPay,
    PaymentPlanRequest,
}

/// `relance.dunning.customer_action` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct CustomerActionV1 {
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub action_id: Uuid,
    pub customer_id: Id,
    pub invoice_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::uuid())")
    )]
    pub reminder_id: Option<Uuid>,
    pub action: CustomerActionKind,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub acted_at: DateTime<Utc>,
    /// The payment reference the customer gives (already paid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// The dispute reason the customer chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Code>,
    /// The date the customer promises to pay by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::date())")
    )]
    pub promised_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Text>,
}
payload!(CustomerActionV1, "relance.dunning.customer_action", 1);

/// How a payment is shared between the reminders that preceded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    LastTouch,
    FirstTouch,
    Linear,
}

/// `relance.dunning.payment_attributed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentAttributedV1 {
    pub payment_id: Id,
    pub invoice_id: Id,
    pub customer_id: Id,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::uuid()"))]
    pub reminder_id: Uuid,
    pub model: AttributionModel,
    /// The part of the payment credited to this reminder.
    pub credited_amount: Money,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub paid_at: DateTime<Utc>,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub reminder_sent_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::arbitrary::instant())")
    )]
    pub first_reminder_at: Option<DateTime<Utc>>,
    pub channel: Channel,
    pub segment: Code,
    pub step: StepRef,
    pub template: TemplateRef,
}
payload!(PaymentAttributedV1, "relance.dunning.payment_attributed", 1);
