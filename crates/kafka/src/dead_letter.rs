//! The dead-letter writer: a record the service cannot process goes to the dead-letter topic,
//! untouched, with why and where it came from, before its offset may be committed.

use chrono::Utc;
use relance_contracts::dead_letter::{
    DeadLetterRecordV1, EventIdentity, OriginalRecord, SourcePosition, DEAD_LETTER_SCHEMA_VERSION,
};
use relance_contracts::{Code, Text};

use crate::consumer::ConsumedRecord;
use crate::producer::{EventProducer, OutgoingRecord, ProduceError};

/// Prefix of the headers a dead-letter record adds to the original's.
pub const DLQ_HEADER_PREFIX: &str = "relance_dlq_";

/// Why a record is dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Machine-readable reason (`invalid_json`, `schema_violation`), a metric label.
    pub reason: &'static str,
    /// A short human explanation.
    pub detail: String,
    /// What could be read of the original event.
    pub identity: Option<EventIdentity>,
}

/// Writes dead-letter records for one service.
#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: EventProducer,
    topic: String,
    service: Code,
}

impl DeadLetterWriter {
    /// A writer to `topic` on behalf of `service`.
    ///
    /// # Panics
    /// If `service` is not a valid code; service names are constants that are.
    pub fn new(producer: EventProducer, topic: impl Into<String>, service: &str) -> Self {
        #[allow(clippy::expect_used)]
        let service = Code::parse(service).expect("service names are snake_case codes");
        Self {
            producer,
            topic: topic.into(),
            service,
        }
    }

    /// The dead-letter Kafka record for `record`: its original key and headers, the
    /// `relance_dlq_*` headers, and a [`DeadLetterRecordV1`] as value.
    pub fn build(&self, record: &ConsumedRecord, dead_letter: &DeadLetter) -> OutgoingRecord {
        let failed_at = Utc::now();
        let reason = Code::parse(dead_letter.reason).unwrap_or_else(|_| {
            #[allow(clippy::expect_used)]
            Code::parse("unclassified").expect("constant code is valid")
        });
        let detail: String = dead_letter.detail.chars().take(2000).collect();
        #[allow(clippy::expect_used)]
        let detail = Text::parse(detail).expect("at most 2000 characters is valid text");
        let body = DeadLetterRecordV1 {
            schemaversion: DEAD_LETTER_SCHEMA_VERSION,
            service: self.service.clone(),
            reason: reason.clone(),
            detail,
            failed_at,
            source: SourcePosition {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            },
            event: dead_letter.identity.clone(),
            original: OriginalRecord::capture(
                record.key.as_deref(),
                record.payload.as_deref(),
                record.headers.clone(),
                record.timestamp_ms,
            ),
        };
        // Serialising plain data cannot fail; an empty body would still carry the headers.
        let payload = body.to_json_bytes().unwrap_or_default();
        let mut headers = record.headers.clone();
        let mut add = |name: &str, value: String| {
            headers.push((
                format!("{DLQ_HEADER_PREFIX}{name}"),
                Some(value.into_bytes()),
            ));
        };
        add("reason", reason.to_string());
        add("source_topic", record.topic.clone());
        add("source_partition", record.partition.to_string());
        add("source_offset", record.offset.to_string());
        add("service", self.service.to_string());
        add(
            "failed_at",
            failed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        OutgoingRecord {
            topic: self.topic.clone(),
            key: record.key.clone(),
            payload,
            headers,
        }
    }

    /// Writes the dead-letter record of `record` and waits for the broker's acknowledgement.
    ///
    /// # Errors
    /// [`ProduceError`]: the caller must not commit past `record` then.
    pub async fn write(
        &self,
        record: &ConsumedRecord,
        dead_letter: &DeadLetter,
    ) -> Result<(), ProduceError> {
        let outgoing = self.build(record, dead_letter);
        self.producer.send(&outgoing).await?;
        tracing::warn!(
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            reason = dead_letter.reason,
            detail = %dead_letter.detail,
            "Record dead-lettered."
        );
        Ok(())
    }
}
