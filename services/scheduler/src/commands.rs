//! The scheduler's decisions as stored and published: a reminder row and its command in a
//! CloudEvents envelope for the outbox. What the commands say is decided by the policy crate
//! (`relance_policy::commands`); this only wraps and stores.

use chrono::{DateTime, Utc};
use relance_contracts::commands::{Approval, CreateTaskV1, SendReminderV1};
use relance_contracts::{Envelope, EventPayload, Id, Name, Text};
use relance_events::{cloudevent_headers, EventBuildError};
use relance_policy::commands::{DecidedReminder, Payload};
use relance_policy::Policy;
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::scheduling::ReminderRow;

/// The `source` of what the scheduler publishes.
pub const SOURCE: &str = "urn:relance:scheduler";

fn build_error(subject: &str) -> impl Fn(relance_contracts::InvalidValue) -> EventBuildError + '_ {
    move |source| EventBuildError {
        subject: subject.to_string(),
        source,
    }
}

/// Kafka headers of a record.
type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The command's envelope as JSON text, serialised once for the reminder row and the outbox
/// (through a `serde_json::Value` tree, then to bytes, then to the database, it was a fifth of
/// the scheduler's CPU with one reminder a customer, by perf).
fn envelope<T: EventPayload + serde::Serialize>(
    decided: &DecidedReminder,
    tenant: &str,
    customer_id: &str,
    now: DateTime<Utc>,
    data: T,
) -> Result<(String, Headers), EventBuildError> {
    let subject = decided.invoice_ids.first().cloned().unwrap_or_default();
    let fail = build_error(&subject);
    let envelope = Envelope::new(
        Id::parse(decided.reminder_id.to_string()).map_err(&fail)?,
        SOURCE,
        Id::parse(tenant).map_err(&fail)?,
        now,
        customer_id.to_string(),
        data,
    )
    .with_subject(subject.clone());
    let headers = cloudevent_headers(T::EVENT_TYPE, &decided.reminder_id.to_string(), tenant);
    // Cannot fail for these types; were it to, the customer is set aside with the reason
    // rather than the round failing on an empty command.
    let command = serde_json::to_string(&envelope).map_err(|error| {
        fail(relance_contracts::InvalidValue {
            kind: "command",
            reason: error.to_string(),
        })
    })?;
    Ok((command, headers))
}

/// A decision as stored (its reminder row) and as published (its outbox record).
pub struct Stored {
    pub row: ReminderRow<String>,
    pub record: OutboxRecord,
}

/// Wraps a decided reminder for storage and the outbox.
///
/// # Errors
/// [`EventBuildError`] when the tenant or the reminder id cannot be an envelope's.
pub fn stored(
    decided: &DecidedReminder,
    policy: &Policy,
    tenant: &str,
    customer_id: &str,
    topics: &relance_config::TopicSettings,
    now: DateTime<Utc>,
) -> Result<Stored, EventBuildError> {
    let (topic, (command, headers)) = match &decided.payload {
        Payload::Message(message) => (
            topics.reminders.clone(),
            envelope(decided, tenant, customer_id, now, message.as_ref().clone())?,
        ),
        Payload::Task(task) => (
            topics.tasks.clone(),
            envelope(decided, tenant, customer_id, now, task.as_ref().clone())?,
        ),
    };
    let record = OutboxRecord {
        topic: topic.clone(),
        key: Some(customer_id.as_bytes().to_vec()),
        payload: command.as_bytes().to_vec(),
        headers,
        cancel_keys: decided
            .invoice_ids
            .iter()
            .map(|invoice_id| outbox::cancel_key(tenant, invoice_id))
            .collect(),
        reminder_id: Some(decided.reminder_id),
        dead_letter: None,
    };
    let row = ReminderRow {
        reminder_id: decided.reminder_id,
        idempotency_key: decided.idempotency_key.clone(),
        tenant: tenant.to_string(),
        customer_id: customer_id.to_string(),
        invoice_ids: decided.invoice_ids.clone(),
        kind: decided.kind.code().into(),
        trigger: serde_json::to_value(&decided.trigger).unwrap_or_default(),
        step_id: decided.step_id.clone(),
        channel: decided.channel.clone(),
        segment: decided.segment.clone(),
        template: decided.template.clone(),
        variant: decided.variant.clone(),
        experiment: decided.experiment.clone(),
        status: if decided.awaiting_approval {
            "awaiting_approval"
        } else {
            "queued"
        }
        .into(),
        scheduled_for: decided.scheduled_for,
        policy_id: policy.policy.clone(),
        policy_version: i32::try_from(policy.version).unwrap_or(i32::MAX),
        topic,
        command,
        decided_by: None,
        decided_at: None,
        decision_note: None,
    };
    Ok(Stored { row, record })
}

/// The outbox record of a command stored in a reminder row (for approved reminders).
pub fn record_of(row: &ReminderRow) -> OutboxRecord {
    let event_type = row
        .command
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    OutboxRecord {
        topic: row.topic.clone(),
        key: Some(row.customer_id.as_bytes().to_vec()),
        payload: serde_json::to_vec(&row.command).unwrap_or_default(),
        headers: cloudevent_headers(event_type, &row.reminder_id.to_string(), &row.tenant),
        cancel_keys: row
            .invoice_ids
            .iter()
            .map(|invoice_id| outbox::cancel_key(&row.tenant, invoice_id))
            .collect(),
        reminder_id: Some(row.reminder_id),
        dead_letter: None,
    }
}

/// Adds the approval to a stored reminder command.
pub fn with_approval(
    command: &mut serde_json::Value,
    approved_by: &str,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), EventBuildError> {
    let fail = build_error(approved_by);
    let approval = Approval {
        approved_by: Name::parse(approved_by).map_err(&fail)?,
        approved_at: at,
        note: note.map(Text::parse).transpose().map_err(&fail)?,
    };
    // Reminders and tasks both carry who approved them and the note, for the message's audit
    // and for the person who does the task.
    let kind = command.get("type").and_then(serde_json::Value::as_str);
    if kind == Some(SendReminderV1::EVENT_TYPE) || kind == Some(CreateTaskV1::EVENT_TYPE) {
        command["data"]["approval"] = serde_json::to_value(approval).unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Issue 14, item 10: the approval note reaches the task it approves, not only reminders.
    #[test]
    fn an_approved_task_carries_who_approved_it_and_the_note() {
        let example = include_str!("../../../proto/examples/relance.task.create.v1.json");
        let mut command: serde_json::Value = serde_json::from_str(example).unwrap();
        command["data"].as_object_mut().unwrap().remove("approval");
        let at = DateTime::parse_from_rfc3339("2026-12-04T09:12:00Z")
            .unwrap()
            .with_timezone(&Utc);
        with_approval(&mut command, "marie.dupont", at, Some("Call before noon")).unwrap();
        assert_eq!(command["data"]["approval"]["approved_by"], "marie.dupont");
        assert_eq!(command["data"]["approval"]["note"], "Call before noon");
        let task: Envelope<CreateTaskV1> = serde_json::from_value(command).unwrap();
        assert_eq!(
            task.data.approval.unwrap().note.unwrap().as_str(),
            "Call before noon"
        );
    }
}
