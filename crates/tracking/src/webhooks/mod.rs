//! Provider webhooks: Postmark (one JSON event per request, `RecordType` discriminator, no
//! signature: basic auth on the webhook URL) and SendGrid (a JSON array of events per request,
//! signed with ECDSA P-256 over the timestamp header and the raw body). Both are read into one
//! [`ProviderEvent`] shape, with a key that makes handling idempotent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;
use uuid::Uuid;

/// What a provider reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Delivered,
    /// `hard`: the address does not exist or the provider stopped sending to it.
    Bounced {
        hard: bool,
    },
    Complained,
    Opened,
    Clicked {
        url: Option<String>,
    },
    /// The recipient unsubscribed (or the provider suppressed them manually).
    Unsubscribed,
    /// Anything else (processed, deferred, dropped, ...): recorded, not acted on.
    Other(String),
}

impl EventKind {
    pub fn label(&self) -> &str {
        match self {
            Self::Delivered => "delivered",
            Self::Bounced { hard: true } => "hard_bounce",
            Self::Bounced { hard: false } => "soft_bounce",
            Self::Complained => "complaint",
            Self::Opened => "open",
            Self::Clicked { .. } => "click",
            Self::Unsubscribed => "unsubscribe",
            Self::Other(_) => "other",
        }
    }
}

/// One provider event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub provider: &'static str,
    /// Unique per event: a provider's event id, or what identifies the event in its payload.
    pub key: String,
    /// Our send id, from the metadata we sent (`relance_send`).
    pub send_id: Option<Uuid>,
    pub provider_message_id: Option<String>,
    pub recipient: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    /// The provider's own machine-open verdict (SendGrid's `sg_machine_open`).
    pub machine_flag: Option<bool>,
    pub kind: EventKind,
}

/// Why a webhook request or event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not the JSON the provider documents: {0}")]
    Malformed(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the public key cannot be read: {0}")]
    BadKey(String),
    #[error("the signed timestamp is not a number of seconds")]
    BadTimestamp,
    #[error(
        "the signed timestamp is {0} s away from now, beyond the tolerance: a replayed request"
    )]
    Stale(i64),
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|text| !text.is_empty())
}

fn instant(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    text(value, key)
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|at| at.with_timezone(&Utc))
}

fn send_id(value: Option<&Value>) -> Option<Uuid> {
    value
        .and_then(Value::as_str)
        .and_then(|text| Uuid::parse_str(text).ok())
}

/// Reads a Postmark webhook request body. `trace_id` is the `X-PM-Webhook-Trace-Id` header, the
/// best key when present (stable across Postmark's retries of one event).
///
/// # Errors
/// [`WebhookError::Malformed`] when the body is not a JSON object with a `RecordType`.
pub fn parse_postmark(body: &[u8], trace_id: Option<&str>) -> Result<ProviderEvent, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| WebhookError::Malformed(error.to_string()))?;
    let record_type = text(&value, "RecordType")
        .ok_or_else(|| WebhookError::Malformed("no RecordType".into()))?;
    // postmark.js declares `MessageId`; payloads say `MessageID`.
    let message_id = text(&value, "MessageID").or_else(|| text(&value, "MessageId"));
    let id = value.get("ID").map(ToString::to_string);
    let (kind, at, recipient) = match record_type.as_str() {
        "Delivery" => (
            EventKind::Delivered,
            instant(&value, "DeliveredAt"),
            text(&value, "Recipient"),
        ),
        "Bounce" => {
            let hard = value
                .get("Inactive")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || matches!(
                    text(&value, "Type").as_deref(),
                    Some("HardBounce" | "BadEmailAddress" | "ManuallyDeactivated")
                );
            (
                EventKind::Bounced { hard },
                instant(&value, "BouncedAt"),
                text(&value, "Email"),
            )
        }
        "SpamComplaint" => (
            EventKind::Complained,
            instant(&value, "BouncedAt"),
            text(&value, "Email"),
        ),
        "Open" => (
            EventKind::Opened,
            instant(&value, "ReceivedAt"),
            text(&value, "Recipient"),
        ),
        "Click" => (
            EventKind::Clicked {
                url: text(&value, "OriginalLink"),
            },
            instant(&value, "ReceivedAt"),
            text(&value, "Recipient"),
        ),
        "SubscriptionChange" => {
            let suppressed = value
                .get("SuppressSending")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let kind = match (suppressed, text(&value, "SuppressionReason").as_deref()) {
                (true, Some("HardBounce")) => EventKind::Bounced { hard: true },
                (true, Some("SpamComplaint")) => EventKind::Complained,
                (true, _) => EventKind::Unsubscribed,
                (false, _) => EventKind::Other("subscription_reactivated".into()),
            };
            (
                kind,
                instant(&value, "ChangedAt"),
                text(&value, "Recipient"),
            )
        }
        other => (EventKind::Other(other.to_string()), None, None),
    };
    let key = match trace_id.filter(|trace| !trace.is_empty()) {
        Some(trace) => format!("trace:{trace}"),
        None => match (&kind, &id) {
            (EventKind::Bounced { .. } | EventKind::Complained, Some(id)) => {
                format!("{record_type}:{id}")
            }
            (EventKind::Clicked { url }, _) => format!(
                "{record_type}:{}:{}:{}",
                message_id.clone().unwrap_or_default(),
                url.clone().unwrap_or_default(),
                at.map(|at| at.to_rfc3339()).unwrap_or_default()
            ),
            _ => format!(
                "{record_type}:{}:{}:{}",
                message_id.clone().unwrap_or_default(),
                recipient.clone().unwrap_or_default(),
                at.map(|at| at.to_rfc3339()).unwrap_or_default()
            ),
        },
    };
    Ok(ProviderEvent {
        provider: "postmark",
        key,
        send_id: send_id(
            value
                .get("Metadata")
                .and_then(|metadata| metadata.get("relance_send")),
        ),
        provider_message_id: message_id,
        recipient,
        occurred_at: at,
        user_agent: text(&value, "UserAgent"),
        machine_flag: None,
        kind,
    })
}

/// Reads a SendGrid Event Webhook body: one result per element, so one bad element does not
/// reject the others.
///
/// # Errors
/// [`WebhookError::Malformed`] when the body is not a JSON array.
pub fn parse_sendgrid(
    body: &[u8],
) -> Result<Vec<Result<ProviderEvent, WebhookError>>, WebhookError> {
    let events: Vec<Value> =
        serde_json::from_slice(body).map_err(|error| WebhookError::Malformed(error.to_string()))?;
    Ok(events.iter().map(parse_sendgrid_event).collect())
}

fn parse_sendgrid_event(value: &Value) -> Result<ProviderEvent, WebhookError> {
    let event = text(value, "event")
        .ok_or_else(|| WebhookError::Malformed("an element has no event".into()))?;
    let key = text(value, "sg_event_id")
        .ok_or_else(|| WebhookError::Malformed("an element has no sg_event_id".into()))?;
    let kind = match event.as_str() {
        "delivered" => EventKind::Delivered,
        "bounce" => EventKind::Bounced {
            hard: text(value, "type").as_deref() != Some("blocked"),
        },
        "spamreport" => EventKind::Complained,
        "open" => EventKind::Opened,
        "click" => EventKind::Clicked {
            url: text(value, "url"),
        },
        "unsubscribe" | "group_unsubscribe" => EventKind::Unsubscribed,
        other => EventKind::Other(other.to_string()),
    };
    Ok(ProviderEvent {
        provider: "sendgrid",
        key,
        send_id: send_id(value.get("relance_send")),
        provider_message_id: text(value, "sg_message_id"),
        recipient: text(value, "email"),
        occurred_at: value
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        user_agent: text(value, "useragent"),
        machine_flag: value.get("sg_machine_open").and_then(Value::as_bool),
        kind,
    })
}

/// SendGrid's signed Event Webhook: ECDSA P-256 with SHA-256 over the timestamp header followed
/// by the raw body, the signature base64 DER, the key base64 DER (SubjectPublicKeyInfo).
#[derive(Debug, Clone)]
pub struct SendGridVerifier {
    key: VerifyingKey,
}

impl SendGridVerifier {
    /// # Errors
    /// [`WebhookError::BadKey`] when the key is not base64 DER of a P-256 public key.
    pub fn from_base64_der(public_key: &str) -> Result<Self, WebhookError> {
        let der = STANDARD
            .decode(public_key.trim())
            .map_err(|error| WebhookError::BadKey(error.to_string()))?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|error| WebhookError::BadKey(error.to_string()))?;
        Ok(Self { key })
    }

    /// Verifies the signature over timestamp + body, then that the timestamp is within
    /// `tolerance_seconds` of `now` (a signature never expires by itself: without this, a
    /// captured request could be replayed forever).
    ///
    /// # Errors
    /// [`WebhookError::BadSignature`] unless the signature is the key's over timestamp + body;
    /// [`WebhookError::BadTimestamp`] when the timestamp is not digits;
    /// [`WebhookError::Stale`] when it is too far from now.
    pub fn verify_fresh(
        &self,
        signature: &str,
        timestamp: &str,
        body: &[u8],
        now: DateTime<Utc>,
        tolerance_seconds: i64,
    ) -> Result<(), WebhookError> {
        let seconds = parse_timestamp(timestamp)?;
        self.verify(signature, timestamp, body)?;
        let away = (now.timestamp() - seconds).abs();
        if away > tolerance_seconds {
            return Err(WebhookError::Stale(away));
        }
        Ok(())
    }

    /// # Errors
    /// [`WebhookError::BadSignature`] unless the signature is the key's over timestamp + body.
    pub(crate) fn verify(
        &self,
        signature: &str,
        timestamp: &str,
        body: &[u8],
    ) -> Result<(), WebhookError> {
        let der = STANDARD
            .decode(signature.trim())
            .map_err(|_| WebhookError::BadSignature)?;
        let signature = Signature::from_der(&der).map_err(|_| WebhookError::BadSignature)?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &signature)
            .map_err(|_| WebhookError::BadSignature)
    }
}

/// Seconds since the Unix epoch, as SendGrid writes them: ASCII digits only (no sign, no
/// fraction, no spaces), at most 12 of them.
fn parse_timestamp(timestamp: &str) -> Result<i64, WebhookError> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(WebhookError::BadTimestamp);
    }
    timestamp
        .parse::<i64>()
        .map_err(|_| WebhookError::BadTimestamp)
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// Whether an `Authorization` header carries these basic credentials.
pub fn basic_auth_matches(header: Option<&str>, username: &str, password: &str) -> bool {
    let Some(encoded) = header.and_then(|header| header.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{username}:{password}");
    constant_time_equal(&decoded, expected.as_bytes())
}

/// Whether a shared-secret header carries the secret.
pub fn secret_matches(header: Option<&str>, secret: &str) -> bool {
    header.is_some_and(|value| constant_time_equal(value.trim().as_bytes(), secret.as_bytes()))
}

#[cfg(test)]
mod tests;
