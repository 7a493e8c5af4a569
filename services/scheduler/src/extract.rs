//! Request extractors of the admin API that answer as docs/admin-api.yaml says: every refusal
//! is a JSON error (`{"error": ..., "message": ...}`) with 400 (413 for a body too large),
//! never axum's plain-text 415/422. Bodies must be JSON objects; text may not hold control
//! characters (PostgreSQL refuses NUL, and the rest has no place in a reason or a note).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::ApiError;

/// A JSON object body, decoded into `T`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| {
                let media = media.trim().to_ascii_lowercase();
                media == "application/json" || media.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::bad_request(
                "the body must be a JSON object, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::bad_request(format!("the body cannot be read: {rejection}"))
                }
            })?;
        decode_object(&bytes).map(ApiJson)
    }
}

/// Decodes a JSON object body into `T`, naming the field at fault.
pub(crate) fn decode_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::bad_request(format!("the body is not JSON: {error}")))?;
    let Some(fields) = value.as_object() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    // The API documents absent fields, never null ones.
    if let Some((field, _)) = fields.iter().find(|(_, value)| value.is_null()) {
        return Err(ApiError::bad_request(format!(
            "{field}: null is not a value; leave the field out"
        )));
    }
    check_text(&value, "")?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(inner.to_string())
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// The longest text a field takes (a reason, a note), as docs/admin-api.yaml says.
pub(crate) const MAX_TEXT_CHARS: usize = 2000;

/// Refuses control characters other than tab, line feed and carriage return in any string.
fn check_text(value: &Value, path: &str) -> Result<(), ApiError> {
    match value {
        Value::String(text) => {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(ApiError::bad_request(format!(
                    "{}: at most {MAX_TEXT_CHARS} characters",
                    if path.is_empty() { "body" } else { path }
                )));
            }
            if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(ApiError::bad_request(format!(
                    "{}: text may not contain control characters",
                    if path.is_empty() { "body" } else { path }
                )));
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_text(item, &format!("{path}[{index}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            check_text(item, &path)
        }),
        _ => Ok(()),
    }
}

/// A path parameter, decoded into `T` (an id that is not UTF-8 once percent-decoded is a
/// JSON 400, like every other refusal).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(format!("path: {}", rejection.body_text())))
    }
}

/// Query parameters, decoded into `T`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| ApiError::bad_request(format!("query: {error}")))
    }
}

/// A page size: `limit` between 1 and 1000, 100 when absent.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(limit) if (1..=1000).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and 1000, not {limit}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Reason {
        reason: String,
    }

    #[test]
    fn only_objects_with_clean_text_and_known_fields_decode() {
        assert!(decode_object::<Reason>(br#"{"reason": "called the customer"}"#).is_ok());
        for bad in [
            &br#"["called the customer"]"#[..],
            br#"{"reason": "a\u0000b"}"#,
            br#"{"reason": "x", "other": 1}"#,
            br#"{"reason": null}"#,
            br#"{}"#,
            b"\x00",
            b"",
        ] {
            let error = decode_object::<Reason>(bad).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let error = decode_object::<Reason>(br#"{"reason": 7}"#).unwrap_err();
        assert!(
            error.message().starts_with("reason:"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_page_is_one_to_a_thousand() {
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some(1000)).unwrap(), 1000);
        for bad in [0, -1, 1001, 100_000] {
            assert!(page_limit(Some(bad)).is_err());
        }
    }
}
