//! The record a relance service writes to the dead-letter topic (`relance.dlq`) when it cannot
//! process a Kafka record. It is not a CloudEvent, because the original may not be one: it
//! keeps the original record untouched and says why and where it came from.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::{Code, Id, Text};

/// Schema version of [`DeadLetterRecordV1`].
pub const DEAD_LETTER_SCHEMA_VERSION: u32 = 1;

/// Where the original record was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct SourcePosition {
    #[cfg_attr(test, proptest(strategy = "\"[a-z][a-z0-9._-]{0,40}\""))]
    pub topic: String,
    #[cfg_attr(test, proptest(strategy = "0i32..10_000"))]
    pub partition: i32,
    #[cfg_attr(test, proptest(strategy = "0i64..i64::MAX"))]
    pub offset: i64,
}

/// What could be read of the original event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct EventIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[cfg_attr(test, proptest(strategy = "proptest::option::of(\"[a-z.]{1,40}\")"))]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Id>,
}

/// A Kafka header of the original record: its value as text when valid UTF-8, as base64
/// otherwise, neither when null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct OriginalHeader {
    #[cfg_attr(test, proptest(strategy = "\"[a-zA-Z0-9_.-]{0,40}\""))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_utf8: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl OriginalHeader {
    /// The header's value bytes.
    ///
    /// # Errors
    /// When `value_base64` is not valid base64.
    pub fn value_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        join_text_or_base64(self.value_utf8.as_deref(), self.value_base64.as_deref())
    }
}

/// The original record, untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct OriginalRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_utf8: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_utf8: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    pub headers: Vec<OriginalHeader>,
    /// The original record's Kafka timestamp, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

impl OriginalRecord {
    /// Captures a record's key, value, headers and timestamp.
    pub fn capture(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        timestamp_ms: Option<i64>,
    ) -> Self {
        let (key_utf8, key_base64) = split_text_or_base64(key);
        let (value_utf8, value_base64) = split_text_or_base64(value);
        Self {
            key_utf8,
            key_base64,
            value_utf8,
            value_base64,
            headers: headers
                .into_iter()
                .map(|(key, value)| {
                    let (value_utf8, value_base64) = split_text_or_base64(value.as_deref());
                    OriginalHeader {
                        key,
                        value_utf8,
                        value_base64,
                    }
                })
                .collect(),
            timestamp_ms,
        }
    }

    /// The original key bytes.
    ///
    /// # Errors
    /// When `key_base64` is not valid base64.
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        join_text_or_base64(self.key_utf8.as_deref(), self.key_base64.as_deref())
    }

    /// The original value bytes.
    ///
    /// # Errors
    /// When `value_base64` is not valid base64.
    pub fn value_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        join_text_or_base64(self.value_utf8.as_deref(), self.value_base64.as_deref())
    }
}

fn split_text_or_base64(bytes: Option<&[u8]>) -> (Option<String>, Option<String>) {
    match bytes {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        },
    }
}

fn join_text_or_base64(
    text: Option<&str>,
    base64_text: Option<&str>,
) -> Result<Option<Vec<u8>>, base64::DecodeError> {
    match (text, base64_text) {
        (Some(text), _) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Some),
        (None, None) => Ok(None),
    }
}

/// A dead-letter record, version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct DeadLetterRecordV1 {
    /// Always [`DEAD_LETTER_SCHEMA_VERSION`].
    #[cfg_attr(test, proptest(value = "DEAD_LETTER_SCHEMA_VERSION"))]
    pub schemaversion: u32,
    /// The service that gave up on the record (`ingestor`).
    pub service: Code,
    /// Machine-readable cause (`invalid_json`, `schema_violation`).
    pub reason: Code,
    /// A short human explanation.
    pub detail: Text,
    #[cfg_attr(test, proptest(strategy = "crate::arbitrary::instant()"))]
    pub failed_at: DateTime<Utc>,
    pub source: SourcePosition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventIdentity>,
    pub original: OriginalRecord,
}

impl DeadLetterRecordV1 {
    /// Serialises the record as the value of a dead-letter Kafka record.
    ///
    /// # Errors
    /// Never in practice: every field serialises.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}
