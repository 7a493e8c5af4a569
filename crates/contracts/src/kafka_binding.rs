//! The CloudEvents Kafka protocol binding (1.0): how a Kafka record carries an event.
//!
//! - **Structured mode**: the record value is the whole event in the JSON event format, with a
//!   `content-type` header starting with `application/cloudevents` (relance writes
//!   `application/cloudevents+json`). A record with neither that header nor `ce_specversion` is
//!   read the same way: billing systems often publish the JSON event with no header at all.
//! - **Binary mode**: the record value is the event's `data` alone; each attribute is a header
//!   `ce_<name>` with a UTF-8 string value, and `datacontenttype` is the `content-type` header.
//!   This is what the CloudEvents SDKs' Kafka bindings produce by default.
//!
//! Both become one JSON event, checked by [`decode_value`] like any other. The binding also maps
//! the `partitionkey` extension to the record key: [`key_check`] tells a consumer when they
//! differ, since ordering per customer then rests on luck.
//!
//! Spec: <https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/kafka-protocol-binding.md>.

use serde_json::{Map, Value};

use crate::dead_letter::EventIdentity;
use crate::decode::{decode_value, DecodeError, DecodeErrorKind, DecodedEvent, EventFamily};

/// A Kafka record header, as consumers read them.
pub type Header = (String, Option<Vec<u8>>);

/// How the record carried its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    Structured,
    Binary,
}

impl ContentMode {
    /// `structured` or `binary`, for logs and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Structured => "structured",
            Self::Binary => "binary",
        }
    }
}

/// The prefix of binary-mode attribute headers.
const ATTRIBUTE_PREFIX: &str = "ce_";

/// Extension attributes of relance's contracts that are integers: in binary mode every header is
/// a string, so these are read back as numbers (CloudEvents type system: Integer).
const INTEGER_ATTRIBUTES: [&str; 1] = ["schemaversion"];

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    // Kafka header names are case-sensitive; the binding writes them in lower case.
    headers
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
}

/// The content mode the record's headers announce.
pub fn content_mode(headers: &[Header]) -> ContentMode {
    let content_type = header(headers, "content-type")
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(|value| value.trim().to_ascii_lowercase());
    let structured = content_type
        .as_deref()
        .is_some_and(|value| value.starts_with("application/cloudevents"));
    let has_spec_version = headers.iter().any(|(key, _)| key == "ce_specversion");
    if has_spec_version && !structured {
        ContentMode::Binary
    } else {
        ContentMode::Structured
    }
}

/// Decodes a Kafka record — its headers and value — as an event of family `E`, in either content
/// mode, checking it against its schema.
///
/// # Errors
/// [`DecodeError`] with the first check the record fails.
pub fn decode_record<E: EventFamily>(
    headers: &[Header],
    value: Option<&[u8]>,
) -> Result<(DecodedEvent<E>, ContentMode), DecodeError> {
    let mode = content_mode(headers);
    let event = match mode {
        ContentMode::Structured => structured_event(headers, value)?,
        ContentMode::Binary => binary_event(headers, value)?,
    };
    decode_value(event).map(|decoded| (decoded, mode))
}

fn invalid_json(detail: String) -> DecodeError {
    DecodeError {
        kind: DecodeErrorKind::InvalidJson,
        detail,
        identity: EventIdentity::default(),
    }
}

fn structured_event(headers: &[Header], value: Option<&[u8]>) -> Result<Value, DecodeError> {
    if let Some(content_type) = header(headers, "content-type")
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_ascii_lowercase)
        .filter(|value| value.starts_with("application/cloudevents"))
    {
        if !content_type.starts_with("application/cloudevents+json") {
            return Err(DecodeError {
                kind: DecodeErrorKind::NotACloudEvent,
                detail: format!(
                    "content-type {content_type:?}: relance reads the JSON event format (application/cloudevents+json) or binary mode."
                ),
                identity: EventIdentity::default(),
            });
        }
    }
    let bytes = value.ok_or_else(|| invalid_json("The record has no value.".into()))?;
    serde_json::from_slice(bytes)
        .map_err(|error| invalid_json(format!("The record value is not UTF-8 JSON: {error}.")))
}

fn binary_event(headers: &[Header], value: Option<&[u8]>) -> Result<Value, DecodeError> {
    let mut event = Map::new();
    for (key, raw) in headers {
        let Some(name) = key.strip_prefix(ATTRIBUTE_PREFIX) else {
            continue;
        };
        let Some(raw) = raw else {
            continue;
        };
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError {
            kind: DecodeErrorKind::NotACloudEvent,
            detail: format!("Header {key} is not UTF-8 text, as the Kafka binding requires."),
            identity: EventIdentity::default(),
        })?;
        let attribute = if INTEGER_ATTRIBUTES.contains(&name) {
            text.trim()
                .parse::<u64>()
                .map_or_else(|_| Value::String(text.to_string()), Value::from)
        } else {
            Value::String(text.to_string())
        };
        event.insert(name.to_string(), attribute);
    }
    let content_type = header(headers, "content-type")
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_string);
    if let Some(content_type) = &content_type {
        event.insert(
            "datacontenttype".into(),
            Value::String(content_type.clone()),
        );
    }
    let json_data = content_type.as_deref().is_none_or(|content_type| {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        media == "application/json" || media.ends_with("+json") || media == "text/json"
    });
    if !json_data {
        return Err(DecodeError {
            kind: DecodeErrorKind::InvalidJson,
            detail: format!(
                "Binary mode with data of content-type {:?}: relance's events carry JSON data.",
                content_type.unwrap_or_default()
            ),
            identity: identity_of_map(&event),
        });
    }
    if let Some(bytes) = value {
        let data: Value = serde_json::from_slice(bytes).map_err(|error| DecodeError {
            kind: DecodeErrorKind::InvalidJson,
            detail: format!(
                "Binary mode: the record value (the event's data) is not UTF-8 JSON: {error}."
            ),
            identity: identity_of_map(&event),
        })?;
        event.insert("data".into(), data);
    }
    Ok(Value::Object(event))
}

fn identity_of_map(event: &Map<String, Value>) -> EventIdentity {
    let text = |name: &str| event.get(name).and_then(Value::as_str);
    EventIdentity {
        id: text("id").and_then(|id| crate::Id::parse(id).ok()),
        event_type: text("type")
            .filter(|event_type| event_type.len() <= 128)
            .map(str::to_string),
        tenant: text("tenant").and_then(|tenant| crate::Id::parse(tenant).ok()),
    }
}

/// How a record's key relates to its event's `partitionkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The key is the partition key: the events of one customer stay in order.
    Matches,
    /// The record has no key: it went to any partition.
    NoKey,
    /// The event names no partition key; the key cannot be checked.
    NoPartitionKey,
    /// The key is another value: events of one customer may be on several partitions.
    Differs,
}

impl KeyCheck {
    /// `no_key`, `no_partitionkey`, `differs` (and `matches`), for metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Matches => "matches",
            Self::NoKey => "no_key",
            Self::NoPartitionKey => "no_partitionkey",
            Self::Differs => "differs",
        }
    }

    /// Every value that puts ordering at risk, for metrics that pre-register their labels.
    pub const AT_RISK: [KeyCheck; 3] = [Self::NoKey, Self::NoPartitionKey, Self::Differs];
}

/// Whether `key` is the event's `partitionkey`, as the binding maps them.
pub fn key_check(key: Option<&[u8]>, partitionkey: Option<&str>) -> KeyCheck {
    match (key, partitionkey) {
        (None, _) => KeyCheck::NoKey,
        (Some(_), None) => KeyCheck::NoPartitionKey,
        (Some(key), Some(partitionkey)) if key == partitionkey.as_bytes() => KeyCheck::Matches,
        (Some(_), Some(_)) => KeyCheck::Differs,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::BillingEvent;

    fn example() -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../proto/examples/billing.invoice.issued.v1.json"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    /// The example as the CloudEvents SDKs' Kafka binding writes it in binary mode.
    fn binary(event: &Value) -> (Vec<Header>, Vec<u8>) {
        let mut headers = Vec::new();
        for (name, value) in event.as_object().unwrap() {
            match name.as_str() {
                "data" => {}
                "datacontenttype" => headers.push((
                    "content-type".to_string(),
                    Some(value.as_str().unwrap().as_bytes().to_vec()),
                )),
                _ => {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    headers.push((format!("ce_{name}"), Some(text.into_bytes())));
                }
            }
        }
        (headers, serde_json::to_vec(&event["data"]).unwrap())
    }

    #[test]
    fn binary_and_structured_modes_decode_to_the_same_event() {
        let event = example();
        let structured_bytes = serde_json::to_vec(&event).unwrap();
        let (structured, mode) = decode_record::<BillingEvent>(
            &[(
                "content-type".into(),
                Some(b"application/cloudevents+json; charset=utf-8".to_vec()),
            )],
            Some(&structured_bytes),
        )
        .unwrap();
        assert_eq!(mode, ContentMode::Structured);
        let (headers, value) = binary(&event);
        let (from_binary, mode) = decode_record::<BillingEvent>(&headers, Some(&value)).unwrap();
        assert_eq!(mode, ContentMode::Binary);
        assert_eq!(from_binary, structured);
        // With no header at all, the value is the structured event (what most producers send).
        let (bare, mode) = decode_record::<BillingEvent>(&[], Some(&structured_bytes)).unwrap();
        assert_eq!((bare, mode), (structured, ContentMode::Structured));
    }

    #[test]
    fn binary_mode_errors_name_what_is_wrong() {
        let event = example();
        let (mut headers, value) = binary(&event);
        let error = decode_record::<BillingEvent>(&headers, Some(b"not json")).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::InvalidJson);
        assert_eq!(
            error.identity.id.as_ref().map(crate::Id::as_str),
            Some("evt_01JD3K8Z7Q"),
            "what could be read is kept for the dead letter"
        );
        headers.retain(|(name, _)| name != "ce_type");
        let error = decode_record::<BillingEvent>(&headers, Some(&value)).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::NotACloudEvent);
        let (mut headers, value) = binary(&event);
        for (name, header_value) in &mut headers {
            if name == "ce_schemaversion" {
                *header_value = Some(b"one".to_vec());
            }
        }
        let error = decode_record::<BillingEvent>(&headers, Some(&value)).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::NotACloudEvent);
        let (mut headers, value) = binary(&event);
        headers.push(("ce_tenant".into(), Some(vec![0xff, 0xfe])));
        let error = decode_record::<BillingEvent>(&headers, Some(&value)).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::NotACloudEvent);
        assert!(error.detail.contains("ce_tenant"), "{}", error.detail);
    }

    #[test]
    fn structured_mode_in_another_event_format_is_refused_plainly() {
        let error = decode_record::<BillingEvent>(
            &[(
                "content-type".into(),
                Some(b"application/cloudevents+avro".to_vec()),
            )],
            Some(b"\x00\x01"),
        )
        .unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::NotACloudEvent);
        assert!(error.detail.contains("avro"), "{}", error.detail);
    }

    #[test]
    fn the_key_is_checked_against_the_partition_key() {
        assert_eq!(key_check(Some(b"cus_1"), Some("cus_1")), KeyCheck::Matches);
        assert_eq!(key_check(None, Some("cus_1")), KeyCheck::NoKey);
        assert_eq!(key_check(Some(b"cus_1"), None), KeyCheck::NoPartitionKey);
        assert_eq!(key_check(Some(b"cus_2"), Some("cus_1")), KeyCheck::Differs);
    }
}
