//! Postmark: `POST /email`, `POST /email/batch` (at most 500 messages) and, to reconcile, a
//! search of outbound messages by our metadata. Bodies are PascalCase JSON; the server token
//! goes in `X-Postmark-Server-Token`. Postmark answers 200 with a non-zero `ErrorCode` for some
//! refusals, so the code is always read, never only the status.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::{client, excerpt, retry_hint, transport_outcome};
use crate::{BoxFuture, EmailProvider, Lookup, Outcome, OutgoingEmail, ProviderError, SEND_ID_KEY};

/// Most messages in one `/email/batch` request.
pub const POSTMARK_BATCH_LIMIT: usize = 500;
/// Postmark's metadata limits: 10 keys, keys of at most 20 characters, values of at most 80.
const METADATA_KEYS: usize = 10;
const METADATA_KEY_CHARS: usize = 20;
const METADATA_VALUE_CHARS: usize = 80;

/// How to reach Postmark.
#[derive(Debug, Clone)]
pub struct PostmarkConfig {
    /// `https://api.postmarkapp.com`, or a mock in tests.
    pub base_url: String,
    pub server_token: SecretString,
    /// The transactional stream reminders go through (`outbound` by default).
    pub message_stream: String,
    pub timeout: Duration,
    /// Postmark's open tracking (its own pixel); relance's pixel works without it.
    pub track_opens: bool,
}

/// The Postmark provider.
pub struct PostmarkProvider {
    config: PostmarkConfig,
    http: reqwest::Client,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Message<'a> {
    from: String,
    to: String,
    subject: &'a str,
    html_body: &'a str,
    text_body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    metadata: BTreeMap<String, String>,
    message_stream: &'a str,
    track_opens: bool,
    /// Relance's signed links are its click tracking; Postmark's rewriting would hide them
    /// behind its own domain and make scanners' clicks look like customers'.
    track_links: &'static str,
}

/// One answer of `/email`, or one element of `/email/batch`'s answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendResponse {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "MessageID", alias = "MessageId")]
    message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchResponse {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    messages: Vec<SearchedMessage>,
}

#[derive(Debug, Deserialize)]
struct SearchedMessage {
    #[serde(default, rename = "MessageID", alias = "MessageId")]
    message_id: Option<String>,
}

/// Keeps metadata within Postmark's limits, our send id first.
fn metadata(email: &OutgoingEmail) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(SEND_ID_KEY.to_string(), email.send_id.to_string());
    for (key, value) in &email.metadata {
        if out.len() >= METADATA_KEYS {
            break;
        }
        let key: String = key.chars().take(METADATA_KEY_CHARS).collect();
        let value: String = value.chars().take(METADATA_VALUE_CHARS).collect();
        out.entry(key).or_insert(value);
    }
    out
}

/// The outcome an `ErrorCode` means; `status` decides for codes Postmark does not list.
fn classify(status: u16, code: i64, message: &str, retry_after: Option<Duration>) -> Outcome {
    let code_text = code.to_string();
    match code {
        0 if status == 200 => Outcome::Accepted { message_id: None },
        10 | 400 | 401 | 405 | 412 | 413 => Outcome::Misconfigured {
            code: code_text,
            message: message.into(),
        },
        100 | 429 => Outcome::Transient {
            code: code_text,
            message: message.into(),
            retry_after,
        },
        406 => Outcome::Rejected {
            code: code_text,
            message: message.into(),
            recipient_inactive: true,
        },
        _ => match status {
            401 | 403 => Outcome::Misconfigured {
                code: format!("http_{status}"),
                message: message.into(),
            },
            429 | 500..=599 => Outcome::Transient {
                code: if code == 0 {
                    format!("http_{status}")
                } else {
                    code_text
                },
                message: message.into(),
                retry_after,
            },
            _ => Outcome::Rejected {
                code: if code == 0 {
                    format!("http_{status}")
                } else {
                    code_text
                },
                message: message.into(),
                recipient_inactive: false,
            },
        },
    }
}

impl PostmarkProvider {
    /// # Errors
    /// [`ProviderError`] when the HTTP client cannot be built.
    pub fn new(config: PostmarkConfig) -> Result<Self, ProviderError> {
        let http = client(config.timeout)?;
        Ok(Self { config, http })
    }

    fn message<'a>(&'a self, email: &'a OutgoingEmail) -> Message<'a> {
        Message {
            from: email.from.to_header(),
            to: email.to.to_header(),
            subject: &email.subject,
            html_body: &email.html,
            text_body: &email.text,
            reply_to: email.reply_to.as_deref(),
            tag: email.tag.as_deref(),
            metadata: metadata(email),
            message_stream: &self.config.message_stream,
            track_opens: self.config.track_opens,
            track_links: "None",
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header(
                "X-Postmark-Server-Token",
                self.config.server_token.expose_secret(),
            )
            .header("Accept", "application/json")
    }

    /// Sends up to [`POSTMARK_BATCH_LIMIT`] messages in one request.
    async fn send_chunk(&self, emails: &[OutgoingEmail]) -> Vec<Outcome> {
        let body: Vec<Message<'_>> = emails.iter().map(|email| self.message(email)).collect();
        let sent = self
            .request(reqwest::Method::POST, "/email/batch")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return vec![transport_outcome(&error); emails.len()],
        };
        let status = response.status().as_u16();
        let hint = retry_hint(response.headers(), chrono::Utc::now().timestamp());
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => return vec![transport_outcome(&error); emails.len()],
        };
        if status == 200 {
            match serde_json::from_str::<Vec<SendResponse>>(&text) {
                Ok(answers) if answers.len() == emails.len() => answers
                    .into_iter()
                    .map(
                        |answer| match classify(200, answer.error_code, &answer.message, hint) {
                            Outcome::Accepted { .. } => Outcome::Accepted {
                                message_id: answer.message_id,
                            },
                            other => other,
                        },
                    )
                    .collect(),
                // The batch was taken but the answer cannot be matched to the messages.
                _ => vec![
                    Outcome::Ambiguous {
                        message: format!("unexpected batch answer: {}", excerpt(&text)),
                    };
                    emails.len()
                ],
            }
        } else {
            // A whole-request error (token, JSON, too many messages, outage) applies to all.
            let outcome = match serde_json::from_str::<SendResponse>(&text) {
                Ok(answer) => classify(status, answer.error_code, &answer.message, hint),
                Err(_) => classify(status, 0, &excerpt(&text), hint),
            };
            vec![outcome; emails.len()]
        }
    }
}

impl EmailProvider for PostmarkProvider {
    fn name(&self) -> &'static str {
        "postmark"
    }

    fn max_batch(&self) -> usize {
        POSTMARK_BATCH_LIMIT
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let sent = self
                .request(reqwest::Method::POST, "/email")
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&self.message(email)).unwrap_or_default())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => return transport_outcome(&error),
            };
            let status = response.status().as_u16();
            let hint = retry_hint(response.headers(), chrono::Utc::now().timestamp());
            let text = match response.text().await {
                Ok(text) => text,
                Err(error) => return transport_outcome(&error),
            };
            match serde_json::from_str::<SendResponse>(&text) {
                Ok(answer) => match classify(status, answer.error_code, &answer.message, hint) {
                    Outcome::Accepted { .. } => Outcome::Accepted {
                        message_id: answer.message_id,
                    },
                    other => other,
                },
                Err(_) if status == 200 => Outcome::Ambiguous {
                    message: format!("unexpected answer: {}", excerpt(&text)),
                },
                Err(_) => classify(status, 0, &excerpt(&text), hint),
            }
        })
    }

    fn send_batch<'a>(&'a self, emails: &'a [OutgoingEmail]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(emails.len());
            for chunk in emails.chunks(POSTMARK_BATCH_LIMIT) {
                if chunk.len() == 1 {
                    outcomes.push(self.send(&chunk[0]).await);
                } else {
                    outcomes.extend(self.send_chunk(chunk).await);
                }
            }
            outcomes
        })
    }

    fn lookup(&self, send_id: Uuid) -> BoxFuture<'_, Lookup> {
        Box::pin(async move {
            let answer = self
                .request(reqwest::Method::GET, "/messages/outbound")
                .query(&[
                    ("count", "1".to_string()),
                    ("offset", "0".to_string()),
                    (
                        format!("metadata_{SEND_ID_KEY}").as_str(),
                        send_id.to_string(),
                    ),
                ])
                .send()
                .await;
            let response = match answer {
                Ok(response) => response,
                Err(error) => return Lookup::Unavailable(error.to_string()),
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Lookup::Unavailable(format!("HTTP {status}: {}", excerpt(&text)));
            }
            match serde_json::from_str::<SearchResponse>(&text) {
                Ok(found) if found.total_count > 0 || !found.messages.is_empty() => Lookup::Found {
                    message_id: found
                        .messages
                        .into_iter()
                        .find_map(|message| message.message_id),
                },
                Ok(_) => Lookup::NotFound,
                Err(error) => Lookup::Unavailable(format!("unexpected search answer: {error}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_decide_before_statuses() {
        assert_eq!(classify(200, 406, "inactive", None).class(), "permanent");
        assert_eq!(classify(422, 406, "inactive", None).class(), "permanent");
        assert_eq!(classify(422, 300, "invalid", None).class(), "permanent");
        assert_eq!(classify(401, 10, "token", None).class(), "config");
        assert_eq!(classify(422, 10, "token", None).class(), "config");
        assert_eq!(classify(422, 405, "credits", None).class(), "config");
        assert_eq!(classify(422, 100, "maintenance", None).class(), "transient");
        assert_eq!(classify(429, 0, "", None).class(), "transient");
        assert_eq!(classify(500, 0, "", None).class(), "transient");
        assert_eq!(classify(503, 0, "", None).class(), "transient");
        assert_eq!(classify(413, 0, "", None).class(), "permanent");
        assert_eq!(classify(200, 0, "OK", None).class(), "accepted");
    }
}
