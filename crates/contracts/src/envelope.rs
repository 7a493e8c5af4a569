//! The CloudEvents 1.0 envelope.
//!
//! Every relance event is a CloudEvent in structured content mode with the JSON event format,
//! which is how the CloudEvents Kafka protocol binding carries a whole event in a record value:
//! the record has the header `content-type: application/cloudevents+json`, its key is the
//! `partitionkey` attribute (the customer id), and its value is the JSON below. Two extension
//! attributes are relance's own: `tenant` and `schemaversion`.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::common::Id;

/// The CloudEvents specification version relance speaks.
pub const SPEC_VERSION: &str = "1.0";

/// The Kafka `content-type` header of a structured-mode CloudEvent in JSON.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The media type of `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The base of every schema's `$id`; `dataschema` points below it.
pub const SCHEMA_BASE_URI: &str = "https://relance.dev/schemas/";

/// A payload type of the contracts: its CloudEvents `type` and its schema version.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The CloudEvents `type` attribute, for example `billing.invoice.issued`.
    const EVENT_TYPE: &'static str;
    /// The major version of the payload's schema.
    const SCHEMA_VERSION: u32;
}

/// A whole event: the CloudEvents attributes and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Always [`SPEC_VERSION`].
    pub specversion: String,
    /// Unique per source: the same source and id twice is the same event twice.
    pub id: Id,
    /// URI-reference of the producing system, for example `/billing/acme` or
    /// `urn:relance:ingestor`.
    pub source: String,
    /// What happened or what is asked, for example `billing.invoice.issued`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened in its source system.
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The object the event is about, usually the invoice id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Extension: the tenant that owns the objects of the event.
    pub tenant: Id,
    /// Extension: the major version of the data schema.
    pub schemaversion: u32,
    /// Extension (CloudEvents partitioning): the Kafka record key, the customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitionkey: Option<String>,
    /// The payload.
    pub data: T,
}

impl<T> Envelope<T> {
    /// The same envelope around other data.
    pub fn map_data<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U> {
        Envelope {
            specversion: self.specversion,
            id: self.id,
            source: self.source,
            event_type: self.event_type,
            time: self.time,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            subject: self.subject,
            tenant: self.tenant,
            schemaversion: self.schemaversion,
            partitionkey: self.partitionkey,
            data: f(self.data),
        }
    }
}

impl<T: EventPayload> Envelope<T> {
    /// Wraps `data` in an envelope with the type, schema version, content type and schema URI
    /// of `T`.
    pub fn new(
        id: Id,
        source: impl Into<String>,
        tenant: Id,
        time: DateTime<Utc>,
        partition_key: impl Into<String>,
        data: T,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.to_string(),
            id,
            source: source.into(),
            event_type: T::EVENT_TYPE.to_string(),
            time,
            datacontenttype: Some(DATA_CONTENT_TYPE.to_string()),
            dataschema: Some(schema_uri(T::EVENT_TYPE, T::SCHEMA_VERSION)),
            subject: None,
            tenant,
            schemaversion: T::SCHEMA_VERSION,
            partitionkey: Some(partition_key.into()),
            data,
        }
    }

    /// Sets the `subject` attribute.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

impl<T: Serialize> Envelope<T> {
    /// The event as the JSON bytes of a Kafka record value.
    ///
    /// # Errors
    /// Only if `T`'s `Serialize` implementation fails, which the contract types never do.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// The `dataschema` URI of an event type and version.
pub fn schema_uri(event_type: &str, version: u32) -> String {
    format!("{SCHEMA_BASE_URI}{event_type}.v{version}.json")
}
