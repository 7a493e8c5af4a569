//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded `To`, `From` (or `MessagingServiceSid`) and `Body`, with HTTP basic auth
//! (account SID, auth token). Success is `201` with the message's `sid`; errors carry
//! `{"code","message","more_info","status"}`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{client, excerpt, retry_hint, transport_outcome};
use crate::{BoxFuture, Outcome, OutgoingSms, ProviderError, SmsProvider};

/// How to reach Twilio.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`, or a mock.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The sending number (E.164) or alphanumeric sender id; or a Messaging Service.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Where Twilio posts delivery status changes (the tracker), if anywhere.
    pub status_callback: Option<String>,
    pub timeout: Duration,
}

/// The Twilio SMS provider.
pub struct TwilioProvider {
    config: TwilioConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

/// Twilio error codes that say the recipient cannot or does not want to receive SMS.
const RECIPIENT_UNREACHABLE: [i64; 4] = [
    21610, // the recipient replied STOP
    21612, // the number cannot receive from this sender
    21614, // not a mobile number
    21211, // invalid "To" number
];

fn classify(
    status: u16,
    code: Option<i64>,
    message: String,
    retry_after: Option<Duration>,
) -> Outcome {
    let code_text = code.map_or_else(|| format!("http_{status}"), |code| code.to_string());
    match (status, code) {
        (_, Some(20003 | 20404)) | (401 | 403 | 404, _) => Outcome::Misconfigured {
            code: code_text,
            message,
        },
        (_, Some(20429)) | (429 | 500..=599, _) => Outcome::Transient {
            code: code_text,
            message,
            retry_after,
        },
        (_, Some(code)) => Outcome::Rejected {
            code: code_text,
            message,
            recipient_inactive: RECIPIENT_UNREACHABLE.contains(&code),
        },
        _ => Outcome::Rejected {
            code: code_text,
            message,
            recipient_inactive: false,
        },
    }
}

impl TwilioProvider {
    /// # Errors
    /// [`ProviderError`] when neither a sender nor a messaging service is configured, or the
    /// HTTP client cannot be built.
    pub fn new(config: TwilioConfig) -> Result<Self, ProviderError> {
        if config.from.is_none() && config.messaging_service_sid.is_none() {
            return Err(ProviderError::Config(
                "Twilio needs a sender number (from) or a messaging_service_sid".into(),
            ));
        }
        let http = client(config.timeout)?;
        Ok(Self { config, http })
    }
}

impl SmsProvider for TwilioProvider {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let url = format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.config.base_url.trim_end_matches('/'),
                self.config.account_sid
            );
            let mut form: Vec<(&str, &str)> = vec![("To", &sms.to), ("Body", &sms.body)];
            if let Some(service) = &self.config.messaging_service_sid {
                form.push(("MessagingServiceSid", service));
            } else if let Some(from) = &self.config.from {
                form.push(("From", from));
            }
            if let Some(callback) = &self.config.status_callback {
                form.push(("StatusCallback", callback));
            }
            let sent = self
                .http
                .post(url)
                .basic_auth(
                    &self.config.account_sid,
                    Some(self.config.auth_token.expose_secret()),
                )
                .header("Accept", "application/json")
                .form(&form)
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
            if (200..300).contains(&status) {
                return match serde_json::from_str::<Created>(&text) {
                    Ok(created) => Outcome::Accepted {
                        message_id: created.sid,
                    },
                    Err(_) => Outcome::Accepted { message_id: None },
                };
            }
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => classify(status, body.code, body.message, hint),
                Err(_) => classify(status, None, excerpt(&text), hint),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_codes_map_to_outcome_classes() {
        assert_eq!(
            classify(400, Some(21610), String::new(), None),
            Outcome::Rejected {
                code: "21610".into(),
                message: String::new(),
                recipient_inactive: true
            }
        );
        assert_eq!(
            classify(400, Some(21602), String::new(), None).class(),
            "permanent"
        );
        assert_eq!(
            classify(401, Some(20003), String::new(), None).class(),
            "config"
        );
        assert_eq!(
            classify(429, Some(20429), String::new(), None).class(),
            "transient"
        );
        assert_eq!(
            classify(503, None, String::new(), None).class(),
            "transient"
        );
    }
}
