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

/// A dead-letter record as built, with what its stored copy needs to know.
#[derive(Debug, Clone)]
pub struct BuiltDeadLetter {
    pub record: OutgoingRecord,
    /// Lower-case hex SHA-256 of the original value (empty value: of nothing).
    pub original_sha256: String,
    /// The original had to be cut for the record to fit `max_bytes`.
    pub truncated: bool,
}

/// The largest dead-letter record when none is configured: under Apache Kafka's default
/// `message.max.bytes` (1 MB) with room for the protocol's overhead.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: usize = 900_000;

/// Writes dead-letter records for one service.
#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: EventProducer,
    topic: String,
    service: Code,
    max_bytes: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The bytes a record takes on the broker, near enough: key, value and headers.
fn record_size(record: &OutgoingRecord) -> usize {
    record.key.as_ref().map_or(0, Vec::len)
        + record.payload.len()
        + record
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
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
            max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
        }
    }

    /// The service it writes for.
    pub fn service(&self) -> &str {
        self.service.as_str()
    }

    /// The same writer, with records of at most `max_bytes` (`kafka.dead_letter_max_bytes`).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The dead-letter Kafka record for `record`: its original key and headers, the
    /// `relance_dlq_*` headers, and a [`DeadLetterRecordV1`] as value.
    pub fn build(&self, record: &ConsumedRecord, dead_letter: &DeadLetter) -> OutgoingRecord {
        self.build_fitted(record, dead_letter).record
    }

    /// [`DeadLetterWriter::build`], cut to fit `max_bytes` when the original is too large: the
    /// value is shortened (then the original headers and key dropped if still needed), the
    /// detail and the `relance_dlq_truncated`, `relance_dlq_original_bytes` headers say so,
    /// and the original's SHA-256 is always in `relance_dlq_original_sha256`, so the whole
    /// copy kept elsewhere can be matched.
    pub fn build_fitted(
        &self,
        record: &ConsumedRecord,
        dead_letter: &DeadLetter,
    ) -> BuiltDeadLetter {
        let original_sha256 = sha256_hex(record.payload.as_deref().unwrap_or_default());
        let failed_at = Utc::now();
        let whole = self.assemble(
            record,
            record,
            dead_letter,
            &original_sha256,
            failed_at,
            None,
        );
        if record_size(&whole) <= self.max_bytes {
            return BuiltDeadLetter {
                record: whole,
                original_sha256,
                truncated: false,
            };
        }
        let original_bytes = record.payload.as_ref().map_or(0, Vec::len);
        let note = format!(
            " The original value ({original_bytes} bytes) was cut to fit the dead-letter topic; the whole record is kept in PostgreSQL (dead_letters, SHA-256 {original_sha256})."
        );
        let mut cut = record.clone();
        // Base64 makes bytes a third larger, and the original appears once in the value.
        let mut keep = (self.max_bytes / 2).min(original_bytes);
        loop {
            cut.payload = record
                .payload
                .as_ref()
                .map(|payload| payload[..keep.min(payload.len())].to_vec());
            let built = self.assemble(
                &cut,
                record,
                dead_letter,
                &original_sha256,
                failed_at,
                Some(&note),
            );
            if record_size(&built) <= self.max_bytes {
                return BuiltDeadLetter {
                    record: built,
                    original_sha256,
                    truncated: true,
                };
            }
            if keep == 0 {
                if !cut.headers.is_empty() {
                    cut.headers.clear();
                    continue;
                }
                cut.key = None;
                let bare = self.assemble(
                    &cut,
                    record,
                    dead_letter,
                    &original_sha256,
                    failed_at,
                    Some(&note),
                );
                return BuiltDeadLetter {
                    record: bare,
                    original_sha256,
                    truncated: true,
                };
            }
            keep = keep * 3 / 4;
        }
    }

    /// Assembles the dead letter of `source` (where it was read) carrying `original` (the
    /// record as kept: whole, or cut).
    fn assemble(
        &self,
        original: &ConsumedRecord,
        source: &ConsumedRecord,
        dead_letter: &DeadLetter,
        original_sha256: &str,
        failed_at: chrono::DateTime<Utc>,
        cut_note: Option<&str>,
    ) -> OutgoingRecord {
        let record = source;
        let reason = Code::parse(dead_letter.reason).unwrap_or_else(|_| {
            #[allow(clippy::expect_used)]
            Code::parse("unclassified").expect("constant code is valid")
        });
        let note = cut_note.unwrap_or_default();
        let detail: String = dead_letter
            .detail
            .chars()
            .take(2000 - note.chars().count().min(2000))
            .chain(note.chars())
            .take(2000)
            .collect();
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
                original.key.as_deref(),
                original.payload.as_deref(),
                original.headers.clone(),
                original.timestamp_ms,
            ),
        };
        // Serialising plain data cannot fail; an empty body would still carry the headers.
        let payload = body.to_json_bytes().unwrap_or_default();
        let mut headers = original.headers.clone();
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
        add("original_sha256", original_sha256.to_string());
        if cut_note.is_some() {
            add("truncated", "true".into());
            add(
                "original_bytes",
                record.payload.as_ref().map_or(0, Vec::len).to_string(),
            );
        }
        OutgoingRecord {
            topic: self.topic.clone(),
            key: original.key.clone(),
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
