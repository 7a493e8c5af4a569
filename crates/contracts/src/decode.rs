//! Turning the bytes of a Kafka record value into a typed, contract-checked event.
//!
//! The checks run in the order a person would debug a bad record, and each failure has its own
//! machine-readable kind, which consumers use as the dead-letter reason: is it JSON, is it a
//! CloudEvent, is its type one this consumer handles, is its schema version supported, does it
//! match the schema of that type and version. Only then is it deserialised into Rust types.

use serde_json::Value;

use crate::billing::{
    CreditNoteAppliedV1, CustomerUpsertedV1, InvoiceDisputedV1, InvoiceIssuedV1, InvoiceUpdatedV1,
    InvoiceVoidedV1, PaymentFailedV1, PaymentRefundedV1, PaymentSucceededV1,
};
use crate::commands::{CreateTaskV1, SendReminderV1};
use crate::common::Id;
use crate::dead_letter::EventIdentity;
use crate::dunning::{
    CustomerActionV1, PaymentAttributedV1, ReminderClickedV1, ReminderFailedV1, ReminderOpenedV1,
    ReminderSentV1, ReminderSkippedV1, StateChangedV1,
};
use crate::envelope::{Envelope, EventPayload, SPEC_VERSION};
use crate::schema::{known_versions, Schemas};

/// Why a record could not be decoded. Each kind is a stable dead-letter reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// The bytes are not UTF-8 JSON.
    InvalidJson,
    /// JSON, but not a CloudEvent: not an object, or `specversion`, `type` or `schemaversion`
    /// missing or of the wrong type.
    NotACloudEvent,
    /// A CloudEvent of a specification version other than 1.0.
    UnsupportedSpecVersion,
    /// An event type the contracts do not define, or one this consumer does not handle.
    UnknownEventType,
    /// A known event type at a schema version the contracts do not define.
    UnsupportedSchemaVersion,
    /// An amount is negative, fractional or above 2^53 − 1 minor units (and nothing else is
    /// wrong).
    InvalidAmount,
    /// The event breaks the schema of its type and version.
    SchemaViolation,
    /// A string holds a NUL character (U+0000), which no text can hold: PostgreSQL refuses it,
    /// and no system that reads the event could store it either.
    InvalidText,
}

impl DecodeErrorKind {
    /// The reason code (`invalid_json`, `schema_violation`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotACloudEvent => "not_a_cloudevent",
            Self::UnsupportedSpecVersion => "unsupported_spec_version",
            Self::UnknownEventType => "unknown_event_type",
            Self::UnsupportedSchemaVersion => "unsupported_schema_version",
            Self::InvalidAmount => "invalid_amount",
            Self::SchemaViolation => "schema_violation",
            Self::InvalidText => "invalid_text",
        }
    }

    /// Every kind, for metrics that pre-register their label values.
    pub const ALL: [DecodeErrorKind; 8] = [
        Self::InvalidJson,
        Self::NotACloudEvent,
        Self::UnsupportedSpecVersion,
        Self::UnknownEventType,
        Self::UnsupportedSchemaVersion,
        Self::InvalidAmount,
        Self::SchemaViolation,
        Self::InvalidText,
    ];
}

/// A record that could not be decoded: why, a human explanation, and what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.code())]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub detail: String,
    pub identity: EventIdentity,
}

/// A closed set of event types a consumer handles, as one Rust enum.
pub trait EventFamily: Sized {
    /// Whether `event_type` belongs to the family.
    fn handles(event_type: &str) -> bool;

    /// Deserialises `data` as the payload of `event_type` at `version`. `None` when the family
    /// has no such type and version.
    fn from_data(
        event_type: &str,
        version: u32,
        data: Value,
    ) -> Option<Result<Self, serde_json::Error>>;

    /// The CloudEvents type of this event.
    fn event_type(&self) -> &'static str;
}

/// A decoded event of family `E`.
pub type DecodedEvent<E> = Envelope<E>;

macro_rules! event_family {
    ($(#[$meta:meta])* $family:ident { $($variant:ident($payload:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        // Events are decoded and handled one at a time; boxing every variant would only make
        // matching on them clumsier.
        #[allow(clippy::large_enum_variant)]
        pub enum $family {
            $($variant($payload),)+
        }

        impl EventFamily for $family {
            fn handles(event_type: &str) -> bool {
                $(event_type == <$payload as EventPayload>::EVENT_TYPE)||+
            }

            fn from_data(
                event_type: &str,
                version: u32,
                data: Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                $(
                    if event_type == <$payload as EventPayload>::EVENT_TYPE
                        && version == <$payload as EventPayload>::SCHEMA_VERSION
                    {
                        return Some(serde_json::from_value::<$payload>(data).map(Self::$variant));
                    }
                )+
                None
            }

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$payload as EventPayload>::EVENT_TYPE,)+
                }
            }
        }
    };
}

event_family!(
    /// The input events of a billing system.
    BillingEvent {
        InvoiceIssued(InvoiceIssuedV1),
        InvoiceUpdated(InvoiceUpdatedV1),
        InvoiceVoided(InvoiceVoidedV1),
        CreditNoteApplied(CreditNoteAppliedV1),
        InvoiceDisputed(InvoiceDisputedV1),
        PaymentSucceeded(PaymentSucceededV1),
        PaymentFailed(PaymentFailedV1),
        PaymentRefunded(PaymentRefundedV1),
        CustomerUpserted(CustomerUpsertedV1),
    }
);

event_family!(
    /// The commands relance's scheduler publishes.
    Command {
        SendReminder(SendReminderV1),
        CreateTask(CreateTaskV1),
    }
);

event_family!(
    /// The dunning events relance publishes.
    DunningEvent {
        StateChanged(StateChangedV1),
        ReminderSent(ReminderSentV1),
        ReminderSkipped(ReminderSkippedV1),
        ReminderFailed(ReminderFailedV1),
        ReminderOpened(ReminderOpenedV1),
        ReminderClicked(ReminderClickedV1),
        CustomerAction(CustomerActionV1),
        PaymentAttributed(PaymentAttributedV1),
    }
);

/// Decodes a record value as an event of family `E`, checking it against its schema.
///
/// # Errors
/// [`DecodeError`] with the first check the record fails.
pub fn decode<E: EventFamily>(bytes: &[u8]) -> Result<DecodedEvent<E>, DecodeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| DecodeError {
        kind: DecodeErrorKind::InvalidJson,
        detail: format!("The record value is not UTF-8 JSON: {error}."),
        identity: EventIdentity::default(),
    })?;
    decode_value(value)
}

/// Decodes an already parsed JSON value; see [`decode`].
///
/// # Errors
/// [`DecodeError`] with the first check the value fails.
pub fn decode_value<E: EventFamily>(value: Value) -> Result<DecodedEvent<E>, DecodeError> {
    let identity = identity_of(&value);
    let fail = |kind: DecodeErrorKind, detail: String| DecodeError {
        kind,
        detail,
        identity: identity.clone(),
    };
    let Some(object) = value.as_object() else {
        return Err(fail(
            DecodeErrorKind::NotACloudEvent,
            "The record value is JSON but not an object.".into(),
        ));
    };
    match object.get("specversion") {
        Some(Value::String(version)) if version == SPEC_VERSION => {}
        Some(Value::String(version)) => {
            return Err(fail(
                DecodeErrorKind::UnsupportedSpecVersion,
                format!("CloudEvents specversion {version:?} is not supported; relance reads 1.0."),
            ))
        }
        _ => {
            return Err(fail(
                DecodeErrorKind::NotACloudEvent,
                "The string attribute specversion is missing.".into(),
            ))
        }
    }
    let Some(event_type) = object.get("type").and_then(Value::as_str) else {
        return Err(fail(
            DecodeErrorKind::NotACloudEvent,
            "The string attribute type is missing.".into(),
        ));
    };
    if !E::handles(event_type) {
        let detail = if known_versions(event_type).is_empty() {
            format!("Event type {event_type:?} is not defined by the contracts.")
        } else {
            format!("Event type {event_type:?} is not one this consumer handles.")
        };
        return Err(fail(DecodeErrorKind::UnknownEventType, detail));
    }
    let Some(version) = object
        .get("schemaversion")
        .and_then(Value::as_u64)
        .and_then(|version| u32::try_from(version).ok())
    else {
        return Err(fail(
            DecodeErrorKind::NotACloudEvent,
            "The integer attribute schemaversion is missing.".into(),
        ));
    };
    let schemas = Schemas::global();
    match schemas.validate_event(event_type, version, &value) {
        None => {
            let known = known_versions(event_type);
            return Err(fail(
                DecodeErrorKind::UnsupportedSchemaVersion,
                format!(
                    "Schema version {version} of {event_type:?} is not supported; supported versions: {known:?}."
                ),
            ));
        }
        Some(Err(violations)) => {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            let only_amounts = violations
                .iter()
                .all(|violation| violation.instance_path.ends_with("/amount_minor"));
            return Err(fail(
                if only_amounts {
                    DecodeErrorKind::InvalidAmount
                } else {
                    DecodeErrorKind::SchemaViolation
                },
                format!(
                    "{event_type} v{version} breaks its schema: {}.",
                    list.join("; ")
                ),
            ));
        }
        Some(Ok(())) => {}
    }
    if let Some(path) = nul_in(&value) {
        return Err(fail(
            DecodeErrorKind::InvalidText,
            format!("{event_type} v{version}: {path} holds a NUL character (U+0000), which no text can hold."),
        ));
    }
    let event_type = event_type.to_string();
    let mut envelope: Envelope<Value> = serde_json::from_value(value).map_err(|error| {
        fail(
            DecodeErrorKind::SchemaViolation,
            format!("The envelope does not deserialise: {error}."),
        )
    })?;
    let data = std::mem::take(&mut envelope.data);
    match E::from_data(&event_type, version, data) {
        Some(Ok(event)) => Ok(envelope.map_data(|_| event)),
        Some(Err(error)) => Err(fail(
            DecodeErrorKind::SchemaViolation,
            format!("The data of {event_type} v{version} does not deserialise: {error}."),
        )),
        None => Err(fail(
            DecodeErrorKind::UnsupportedSchemaVersion,
            format!("Schema version {version} of {event_type:?} is not handled by this consumer."),
        )),
    }
}

/// The JSON pointer of the first string (key or value) holding U+0000, if any.
fn nul_in(value: &Value) -> Option<String> {
    let mut segments = Vec::new();
    nul_path(value, &mut segments).then(|| {
        segments
            .iter()
            .rev()
            .fold(String::new(), |path, segment| path + "/" + segment)
    })
}

/// Whether `value` holds U+0000; if so `segments` ends up with its path, innermost first. The
/// path is built only on the way back from a find: every event is checked, and almost none
/// holds one.
fn nul_path(value: &Value, segments: &mut Vec<String>) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            let found = nul_path(item, segments);
            if found {
                segments.push(index.to_string());
            }
            found
        }),
        Value::Object(fields) => fields.iter().any(|(key, item)| {
            let found = key.contains('\0') || nul_path(item, segments);
            if found {
                segments.push(key.clone());
            }
            found
        }),
        _ => false,
    }
}

/// What can be read of an event's identity even when the rest is wrong.
fn identity_of(value: &Value) -> EventIdentity {
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    EventIdentity {
        id: text("id").and_then(|id| Id::parse(id).ok()),
        event_type: text("type")
            .filter(|event_type| event_type.len() <= 128)
            .map(str::to_string),
        tenant: text("tenant").and_then(|tenant| Id::parse(tenant).ok()),
    }
}
