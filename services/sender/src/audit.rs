//! The audit trail as events: every reminder sent, skipped or failed is published on the
//! events topic (through the outbox, in the transaction that records it), failures a person
//! must look at become tasks, and commands a provider refuses go to the dead-letter topic.

use chrono::{DateTime, Utc};
use relance_contracts::commands::{
    CreateTaskV1, MessageChannel, SendReminderV1, TaskKind, TaskPriority,
};
use relance_contracts::dunning::{ReminderFailedV1, ReminderSentV1, ReminderSkippedV1};
use relance_contracts::{Channel, Code, EventPayload, Id, Text};
use relance_storage::outbox::OutboxRecord;
use serde::Serialize;
use uuid::Uuid;

/// The `source` of what the sender publishes.
pub const SOURCE: &str = "urn:relance:sender";

/// Namespace of the ids of the sender's events, derived from the delivery and what happened.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_52a4_1e0b_4c55_9f3e_2a77_0c41_5e10);

/// A value as a contract code: lower-case, `[a-z0-9_]`, starting with a letter.
pub fn code(value: &str) -> Code {
    let mut text: String = value
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
        text.insert_str(0, "c_");
    }
    #[allow(clippy::expect_used)]
    Code::parse(text)
        .unwrap_or_else(|_| Code::parse("unclassified").expect("constant code is valid"))
}

/// Text for people, cut to the contract's 2000 characters.
pub fn text(value: &str) -> Text {
    let cut: String = value.chars().take(2000).collect();
    #[allow(clippy::expect_used)]
    Text::parse(cut).unwrap_or_else(|_| Text::parse("").expect("empty text is valid"))
}

fn channel(channel: MessageChannel) -> Channel {
    match channel {
        MessageChannel::Email => Channel::Email,
        MessageChannel::Sms => Channel::Sms,
    }
}

fn invoice_ids(command: &SendReminderV1) -> Vec<Id> {
    command
        .invoices
        .iter()
        .map(|invoice| invoice.invoice_id.clone())
        .collect()
}

/// The outbox record of a dunning event or a task.
fn record<T: EventPayload + Serialize>(
    topic: &str,
    tenant: &str,
    customer_id: &Id,
    id: Uuid,
    now: DateTime<Utc>,
    data: T,
) -> Option<OutboxRecord> {
    relance_events::customer_record(topic, SOURCE, tenant, customer_id.as_str(), id, now, data)
}

fn event_id(delivery_id: Uuid, what: &str, attempt: i32) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{delivery_id}\u{1f}{what}\u{1f}{attempt}").as_bytes(),
    )
}

/// What was sent, for `relance.dunning.reminder_sent`.
pub struct Sent<'a> {
    pub provider: &'a str,
    pub provider_message_id: Option<&'a str>,
    pub recipient: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub body_sha256: Option<&'a str>,
}

/// `relance.dunning.reminder_sent`.
pub fn sent(
    topic: &str,
    tenant: &str,
    delivery_id: Uuid,
    command: &SendReminderV1,
    sent: &Sent<'_>,
    now: DateTime<Utc>,
) -> Option<OutboxRecord> {
    let data = ReminderSentV1 {
        reminder_id: command.reminder_id,
        idempotency_key: command.idempotency_key.clone(),
        customer_id: command.customer_id.clone(),
        invoice_ids: invoice_ids(command),
        channel: channel(command.channel),
        provider: code(sent.provider),
        provider_message_id: sent
            .provider_message_id
            .map(|id| id.chars().take(256).collect()),
        recipient_address: sent
            .recipient
            .map(|address| address.chars().take(254).collect()),
        segment: command.segment.clone(),
        step: command.step.clone(),
        template: command.template.clone(),
        sent_at: now,
        subject: sent
            .subject
            .map(|subject| subject.chars().take(500).collect()),
        body_sha256: sent.body_sha256.map(str::to_string),
    };
    record(
        topic,
        tenant,
        &command.customer_id,
        event_id(delivery_id, "sent", 0),
        now,
        data,
    )
}

/// `relance.dunning.reminder_skipped`.
pub fn skipped(
    topic: &str,
    tenant: &str,
    delivery_id: Uuid,
    command: &SendReminderV1,
    reason: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Option<OutboxRecord> {
    let data = ReminderSkippedV1 {
        reminder_id: command.reminder_id,
        idempotency_key: command.idempotency_key.clone(),
        customer_id: command.customer_id.clone(),
        invoice_ids: invoice_ids(command),
        reason: code(reason),
        detail: Some(text(detail)),
        skipped_at: now,
    };
    record(
        topic,
        tenant,
        &command.customer_id,
        event_id(delivery_id, "skipped", 0),
        now,
        data,
    )
}

/// A failed attempt, for `relance.dunning.reminder_failed`.
pub struct Failure<'a> {
    pub provider: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub retryable: bool,
    pub attempt: i32,
}

/// `relance.dunning.reminder_failed`.
pub fn failed(
    topic: &str,
    tenant: &str,
    delivery_id: Uuid,
    command: &SendReminderV1,
    failure: &Failure<'_>,
    now: DateTime<Utc>,
) -> Option<OutboxRecord> {
    let data = ReminderFailedV1 {
        reminder_id: command.reminder_id,
        idempotency_key: command.idempotency_key.clone(),
        customer_id: command.customer_id.clone(),
        invoice_ids: invoice_ids(command),
        channel: channel(command.channel),
        provider: code(failure.provider),
        error_code: code(failure.code),
        error_message: text(failure.message),
        retryable: failure.retryable,
        attempt: u32::try_from(failure.attempt.max(1)).unwrap_or(1),
        failed_at: now,
    };
    let what = format!("failed_{}", failure.code);
    record(
        topic,
        tenant,
        &command.customer_id,
        event_id(delivery_id, &what, failure.attempt),
        now,
        data,
    )
}

/// A task for a person: a reminder that could not be delivered, or whose delivery is unknown.
pub fn task(
    topic: &str,
    tenant: &str,
    delivery_id: Uuid,
    command: &SendReminderV1,
    reason: &str,
    now: DateTime<Utc>,
) -> Option<OutboxRecord> {
    let task_id = event_id(delivery_id, "task", 0);
    let data = CreateTaskV1 {
        task_id,
        idempotency_key: format!("{}:delivery_review", command.idempotency_key)
            .chars()
            .take(256)
            .collect(),
        customer_id: command.customer_id.clone(),
        kind: TaskKind::ManualReview,
        priority: TaskPriority::Normal,
        // The customer's date, in the zone the reminder was planned in.
        due_on: relance_domain::calendar::local_date(
            relance_domain::calendar::zone(command.timezone.as_str())
                .unwrap_or(relance_domain::calendar::UNKNOWN_ZONE),
            now,
        ),
        invoice_ids: invoice_ids(command),
        amount_due: Some(
            command
                .invoices
                .iter()
                .map(|invoice| invoice.amount_due.clone())
                .collect(),
        ),
        contact: Some(command.recipient.clone()),
        reason: Some(text(reason)),
        segment: Some(command.segment.clone()),
        step: Some(command.step.clone()),
        customer_note: None,
        approval: None,
    };
    record(topic, tenant, &command.customer_id, task_id, now, data)
}

#[cfg(test)]
mod tests {
    use super::code;

    #[test]
    fn provider_answers_become_contract_codes() {
        assert_eq!(code("406").as_str(), "c_406");
        assert_eq!(code("http_422").as_str(), "http_422");
        assert_eq!(code("Postmark-300").as_str(), "postmark_300");
        assert_eq!(code("").as_str(), "c_");
    }
}
