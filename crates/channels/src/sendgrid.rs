//! SendGrid v3: `POST /v3/mail/send` with a bearer key. Success is `202` with the message id
//! in `X-Message-Id`; errors carry `{"errors":[{"message","field","help"}]}`. Our send id goes
//! in `custom_args`, which SendGrid flattens into every webhook event.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{client, excerpt, retry_hint, transport_outcome};
use crate::{BoxFuture, EmailProvider, Outcome, OutgoingEmail, ProviderError, SEND_ID_KEY};

/// How to reach SendGrid.
#[derive(Debug, Clone)]
pub struct SendGridConfig {
    /// `https://api.sendgrid.com` (`https://api.eu.sendgrid.com` for EU subusers), or a mock.
    pub base_url: String,
    pub api_key: SecretString,
    pub timeout: Duration,
    /// Validate without sending (SendGrid answers 200 instead of 202).
    pub sandbox: bool,
}

/// The SendGrid provider.
pub struct SendGridProvider {
    config: SendGridConfig,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct Address<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: String,
    #[serde(default)]
    field: Option<String>,
}

/// SendGrid refuses `;` and `,` in names; the rest as every provider gets a name.
fn display_name(name: Option<&String>) -> Option<String> {
    name.map(|name| {
        relance_delivery::text::header_text(name)
            .replace([';', ','], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
    .filter(|name| !name.is_empty())
}

fn error_message(text: &str) -> String {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) if !body.errors.is_empty() => body
            .errors
            .iter()
            .map(|error| match &error.field {
                Some(field) => format!("{field}: {}", error.message),
                None => error.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => excerpt(text),
    }
}

fn classify(
    status: u16,
    message: String,
    retry_after: Option<Duration>,
    sandbox: bool,
    message_id: Option<String>,
) -> Outcome {
    let code = format!("http_{status}");
    match status {
        202 => Outcome::Accepted { message_id },
        200 if sandbox => Outcome::Accepted { message_id: None },
        200 => Outcome::Misconfigured {
            code,
            message: "SendGrid validated the message without sending it (sandbox mode is on for this key or account)".into(),
        },
        401 | 403 | 404 | 405 | 406 => Outcome::Misconfigured { code, message },
        429 | 500..=599 => Outcome::Transient { code, message, retry_after },
        _ => Outcome::Rejected {
            code,
            message,
            recipient_inactive: false,
        },
    }
}

impl SendGridProvider {
    /// # Errors
    /// [`ProviderError`] when the HTTP client cannot be built.
    pub fn new(config: SendGridConfig) -> Result<Self, ProviderError> {
        let http = client(config.timeout)?;
        Ok(Self { config, http })
    }

    fn body(&self, email: &OutgoingEmail) -> serde_json::Value {
        let mut custom_args: BTreeMap<String, String> = email.metadata.clone();
        custom_args.insert(SEND_ID_KEY.to_string(), email.send_id.to_string());
        let mut body = json!({
            "personalizations": [{
                "to": [Address { email: &email.to.address, name: display_name(email.to.name.as_ref()) }],
                "custom_args": custom_args,
            }],
            "from": Address { email: &email.from.address, name: display_name(email.from.name.as_ref()) },
            "subject": email.subject,
            "content": [
                {"type": "text/plain", "value": email.text},
                {"type": "text/html", "value": email.html},
            ],
            "headers": {"X-Relance-Send": email.send_id.to_string()},
            "tracking_settings": {
                "click_tracking": {"enable": false, "enable_text": false},
                "subscription_tracking": {"enable": false},
            },
            "mail_settings": {"sandbox_mode": {"enable": self.config.sandbox}},
        });
        if let Some(reply_to) = &email.reply_to {
            body["reply_to"] = json!({"email": reply_to});
        }
        if let Some(tag) = &email.tag {
            body["categories"] = json!(["dunning", tag]);
        }
        body
    }
}

impl EmailProvider for SendGridProvider {
    fn name(&self) -> &'static str {
        "sendgrid"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let url = format!(
                "{}/v3/mail/send",
                self.config.base_url.trim_end_matches('/')
            );
            let sent = self
                .http
                .post(url)
                .bearer_auth(self.config.api_key.expose_secret())
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&self.body(email)).unwrap_or_default())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => return transport_outcome(&error),
            };
            let status = response.status().as_u16();
            let hint = retry_hint(response.headers(), chrono::Utc::now().timestamp());
            let message_id = response
                .headers()
                .get("x-message-id")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            if status == 202 {
                return Outcome::Accepted { message_id };
            }
            let text = response.text().await.unwrap_or_default();
            classify(
                status,
                error_message(&text),
                hint,
                self.config.sandbox,
                message_id,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcome_classes() {
        let class = |status| classify(status, String::new(), None, false, None).class();
        assert_eq!(class(202), "accepted");
        assert_eq!(class(200), "config");
        assert_eq!(class(400), "permanent");
        assert_eq!(class(413), "permanent");
        assert_eq!(class(401), "config");
        assert_eq!(class(403), "config");
        assert_eq!(class(406), "config");
        assert_eq!(class(429), "transient");
        assert_eq!(class(500), "transient");
        assert_eq!(class(503), "transient");
        assert_eq!(
            classify(200, String::new(), None, true, None).class(),
            "accepted"
        );
    }

    #[test]
    fn every_error_of_the_body_is_kept() {
        let text = r#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":"http://x"},{"message":"too many requests","field":null}]}"#;
        assert_eq!(
            error_message(text),
            "from.email: The from email does not contain a valid address.; too many requests"
        );
        assert_eq!(error_message("not json"), "not json");
    }
}
