//! What every HTTP provider shares: the client, and how transport failures and rate-limit
//! hints are read.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::{Outcome, ProviderError};

/// A client with a connect timeout and an overall request timeout.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("relance-sender/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| ProviderError::Client(error.to_string()))
}

/// A request that failed without an HTTP answer. Connection failures happen before anything is
/// written, so they are safe to retry; anything later (a timeout, a reset) may have reached the
/// provider.
pub(crate) fn transport_outcome(error: &reqwest::Error) -> Outcome {
    let message = error_chain(error);
    if error.is_connect() {
        Outcome::Transient {
            code: "connect".into(),
            message,
            retry_after: None,
        }
    } else if error.is_builder() {
        Outcome::Misconfigured {
            code: "request".into(),
            message,
        }
    } else {
        Outcome::Ambiguous { message }
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` (seconds or an HTTP date), else `X-RateLimit-Reset` (Unix seconds).
pub(crate) fn retry_hint(headers: &HeaderMap, now_unix: i64) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = text("retry-after") {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            let at = date
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_secs() as i64)
                .unwrap_or(now_unix);
            return Some(Duration::from_secs(
                at.saturating_sub(now_unix).max(0) as u64
            ));
        }
    }
    text("x-ratelimit-reset")
        .and_then(|value| value.parse::<i64>().ok())
        .map(|reset| Duration::from_secs(reset.saturating_sub(now_unix).max(0) as u64))
}

/// The body of an error answer, cut to a length fit for logs and the audit trail.
pub(crate) fn excerpt(body: &str) -> String {
    const LIMIT: usize = 500;
    if body.chars().count() <= LIMIT {
        body.trim().to_string()
    } else {
        format!("{}…", body.chars().take(LIMIT).collect::<String>().trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_hints_are_read_from_either_header() {
        let now = 1_700_000_000;
        let mut headers = HeaderMap::new();
        assert_eq!(retry_hint(&headers, now), None);
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1700000030"));
        assert_eq!(retry_hint(&headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_hint(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Tue, 14 Nov 2023 22:13:40 GMT"),
        );
        assert_eq!(retry_hint(&headers, now), Some(Duration::from_secs(20)));
    }
}
