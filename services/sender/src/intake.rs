//! Intake: reminder commands from Kafka become deliveries in PostgreSQL, one transaction per
//! batch, before the offsets are committed. A command seen before (same idempotency key) is a
//! no-op; a record that is not a reminder command goes to the dead-letter topic. Sending is the
//! dispatcher's work, so a slow or failing provider never holds the partition.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use relance_contracts::commands::{MessageChannel, SendReminderV1};
use relance_contracts::dead_letter::EventIdentity;
use relance_contracts::{decode_record, Command, DecodeError, Envelope};
use relance_kafka::{
    BatchHandler, ConsumedRecord, DeadLetter, DeadLetterWriter, HandlerError, KafkaMetrics,
};
use relance_runtime::Clock;
use relance_storage::deliveries::{insert_new, NewDelivery};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::StorageError;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::metrics::SenderMetrics;

/// Namespace of delivery ids, derived from the tenant and the command's idempotency key so the
/// same command always has the same send id.
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x2f0a_9c1e_77b4_4d1a_8e63_5b0d_c3a9_e201);

/// The send id of a command.
pub fn delivery_id(tenant: &str, idempotency_key: &str) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("{tenant}\u{1f}{idempotency_key}").as_bytes(),
    )
}

/// Where a command was read, kept with its delivery so a provider's refusal can send the
/// original record to the dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub headers: Vec<(String, Option<String>)>,
}

impl Source {
    pub fn of(record: &ConsumedRecord) -> Self {
        let encode = |bytes: &Vec<u8>| STANDARD.encode(bytes);
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_ref().map(encode),
            payload: record.payload.as_ref().map(encode),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(encode)))
                .collect(),
        }
    }

    /// The record as it was read.
    pub fn record(&self) -> ConsumedRecord {
        let decode = |text: &String| STANDARD.decode(text).unwrap_or_default();
        ConsumedRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_ref().map(decode),
            payload: self.payload.as_ref().map(decode),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(decode)))
                .collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Records reminder commands as deliveries.
pub struct IntakeHandler {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub dead_letters: DeadLetterWriter,
    pub metrics: SenderMetrics,
    /// Woken when deliveries were recorded.
    pub dispatcher: Arc<Notify>,
    /// Woken when dead letters were queued in the outbox.
    pub relay: Arc<Notify>,
    /// Counts records whose key is not their command's partition key.
    pub kafka_metrics: KafkaMetrics,
}

enum Planned {
    /// A command to deliver, and its event's partition key.
    Delivery(Box<NewDelivery>, Option<String>),
    DeadLetter(&'static str, String, EventIdentity),
}

fn plan(record: &ConsumedRecord, received_at: chrono::DateTime<chrono::Utc>) -> Planned {
    // Structured or binary content mode (the CloudEvents Kafka binding).
    let envelope = match decode_record::<Command>(&record.headers, record.payload.as_deref()) {
        Ok((envelope, _)) => envelope,
        Err(DecodeError {
            kind,
            detail,
            identity,
        }) => return Planned::DeadLetter(kind.code(), detail, identity),
    };
    let identity = EventIdentity {
        id: Some(envelope.id.clone()),
        event_type: Some(envelope.event_type.clone()),
        tenant: Some(envelope.tenant.clone()),
    };
    let tenant = envelope.tenant.as_str().to_string();
    let Command::SendReminder(command) = &envelope.data else {
        return Planned::DeadLetter(
            "unexpected_command",
            format!(
                "{} commands go to the tasks topic; the sender delivers reminders only.",
                envelope.event_type
            ),
            identity,
        );
    };
    let command: &SendReminderV1 = command;
    let stored: Envelope<SendReminderV1> = envelope.clone().map_data(|_| command.clone());
    let Ok(command_json) = serde_json::to_value(&stored) else {
        return Planned::DeadLetter(
            "unclassified",
            "The command cannot be stored.".into(),
            identity,
        );
    };
    let partitionkey = envelope.partitionkey.clone();
    Planned::Delivery(
        Box::new(NewDelivery {
            delivery_id: delivery_id(&tenant, &command.idempotency_key),
            idempotency_key: command.idempotency_key.clone(),
            reminder_id: command.reminder_id,
            customer_id: command.customer_id.as_str().to_string(),
            invoice_ids: command
                .invoices
                .iter()
                .map(|invoice| invoice.invoice_id.as_str().to_string())
                .collect(),
            channel: match command.channel {
                MessageChannel::Email => "email".into(),
                MessageChannel::Sms => "sms".into(),
            },
            segment: command.segment.as_str().to_string(),
            step_id: command.step.id.as_str().to_string(),
            template: command.template.id.as_str().to_string(),
            variant: command
                .template
                .variant
                .as_ref()
                .map(|variant| variant.as_str().to_string()),
            command: command_json,
            source: serde_json::to_value(Source::of(record)).unwrap_or_default(),
            received_at,
            tenant,
        }),
        partitionkey,
    )
}

impl IntakeHandler {
    async fn record(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<(usize, usize, usize), StorageError> {
        let now = self.clock.now();
        let mut deliveries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut dead_letters: Vec<OutboxRecord> = Vec::new();
        for record in batch {
            match plan(record, now) {
                Planned::Delivery(delivery, partitionkey) => {
                    self.kafka_metrics.check_key(
                        &record.topic,
                        record.partition,
                        record.offset,
                        record.key.as_deref(),
                        partitionkey.as_deref(),
                        &delivery.idempotency_key,
                    );
                    // A command twice in one batch: the first copy counts.
                    if seen.insert(delivery.idempotency_key.clone()) {
                        deliveries.push(*delivery);
                    }
                }
                Planned::DeadLetter(reason, detail, identity) => {
                    tracing::warn!(reason, detail = %detail, topic = %record.topic, partition = record.partition, offset = record.offset, "Dead-lettering a record that is not a reminder command.");
                    dead_letters.push(relance_events::dead_letter_outbox(
                        &self.dead_letters,
                        record,
                        &DeadLetter {
                            reason,
                            detail,
                            identity: Some(identity),
                        },
                    ));
                }
            }
        }
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let inserted = insert_new(&mut transaction, &deliveries).await?;
        outbox::enqueue(&mut transaction, &dead_letters).await?;
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing reminder commands",
                source,
            })?;
        let duplicates = batch.len() - dead_letters.len() - inserted.len();
        Ok((inserted.len(), duplicates, dead_letters.len()))
    }
}

impl BatchHandler for IntakeHandler {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        match self.record(batch).await {
            Ok((accepted, duplicates, dead_lettered)) => {
                self.metrics.command("accepted", accepted);
                self.metrics.command("duplicate", duplicates);
                self.metrics.command("dead_lettered", dead_lettered);
                if accepted > 0 {
                    self.dispatcher.notify_one();
                }
                if dead_lettered > 0 {
                    self.relay.notify_one();
                }
                tracing::debug!(
                    records = batch.len(),
                    accepted,
                    duplicates,
                    dead_lettered,
                    "Reminder commands recorded."
                );
                Ok(())
            }
            Err(error) if error.is_transient() => Err(HandlerError::Transient(Box::new(error))),
            Err(error) => Err(HandlerError::Fatal(Box::new(error))),
        }
    }
}
