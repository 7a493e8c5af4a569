//! The admin API client.

use serde_json::{json, Value};

/// Calls the scheduler's admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    json: bool,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>, json: bool) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            json,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let token = self
            .token
            .as_deref()
            .ok_or("a token is needed: --token or RELANCE_ADMIN_TOKEN")?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&without_unset(body));
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("{}: {error}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            Err(format!("{status}: {message}"))
        }
    }

    fn print(&self, value: &Value, text: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            println!("{}", text(value));
        }
    }

    pub async fn list_approvals(&self, tenant: Option<&str>) -> Result<(), String> {
        let path = match tenant {
            Some(tenant) => format!("/v1/approvals?tenant={}", percent_encode(tenant)),
            None => "/v1/approvals".to_string(),
        };
        let approvals = self.call(reqwest::Method::GET, &path, None).await?;
        self.print(&approvals, |approvals| {
            let rows: Vec<String> = approvals
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|row| {
                            format!(
                                "{}  {}  {}  {} {} ({})  invoices {}",
                                row["reminder_id"].as_str().unwrap_or_default(),
                                row["tenant"].as_str().unwrap_or_default(),
                                row["customer_id"].as_str().unwrap_or_default(),
                                row["step_id"].as_str().unwrap_or_default(),
                                row["channel"].as_str().unwrap_or_default(),
                                row["template"].as_str().unwrap_or("-"),
                                row["invoice_ids"]
                                    .as_array()
                                    .map(|ids| ids
                                        .iter()
                                        .filter_map(Value::as_str)
                                        .collect::<Vec<_>>()
                                        .join(","))
                                    .unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if rows.is_empty() {
                "No reminder awaits approval.".to_string()
            } else {
                rows.join("\n")
            }
        });
        Ok(())
    }

    pub async fn decide(
        &self,
        reminder_id: &str,
        decision: &str,
        body: Value,
    ) -> Result<(), String> {
        let result = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/approvals/{}/{decision}", percent_encode(reminder_id)),
                Some(body),
            )
            .await?;
        self.print(&result, |row| {
            format!(
                "{} {}: {} by {}",
                row["step_id"].as_str().unwrap_or_default(),
                row["reminder_id"].as_str().unwrap_or_default(),
                row["status"].as_str().unwrap_or_default(),
                row["decided_by"].as_str().unwrap_or_default()
            )
        });
        Ok(())
    }

    pub async fn edit(&self, reminder_id: &str, body: Value) -> Result<(), String> {
        let result = self
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/approvals/{}", percent_encode(reminder_id)),
                Some(body),
            )
            .await?;
        self.print(&result, |row| {
            format!(
                "{}: template {}, channel {}, still awaiting approval",
                row["reminder_id"].as_str().unwrap_or_default(),
                row["template"].as_str().unwrap_or("-"),
                row["channel"].as_str().unwrap_or_default()
            )
        });
        Ok(())
    }

    pub async fn pause(
        &self,
        kind: &str,
        id: &str,
        reason: &str,
        until: Option<&str>,
    ) -> Result<(), String> {
        self.change(
            &format!("/v1/{kind}/{}/pause", percent_encode(id)),
            json!({"reason": reason, "until": until}),
        )
        .await
    }

    pub async fn resume(&self, kind: &str, id: &str, reason: &str) -> Result<(), String> {
        self.change(
            &format!("/v1/{kind}/{}/resume", percent_encode(id)),
            json!({"reason": reason}),
        )
        .await
    }

    /// `POST /v1/customers/{id}/erase`.
    pub async fn erase_customer(&self, id: &str, legal_basis: &str) -> Result<(), String> {
        self.change(
            &format!("/v1/customers/{}/erase", percent_encode(id)),
            json!({"legal_basis": legal_basis}),
        )
        .await
    }

    /// `POST /v1/invoices/{id}/{action}` with a reason (settle-claim, cancel-promise).
    pub async fn invoice_action(&self, id: &str, action: &str, reason: &str) -> Result<(), String> {
        self.change(
            &format!("/v1/invoices/{}/{action}", percent_encode(id)),
            json!({"reason": reason}),
        )
        .await
    }

    /// POSTs a change and prints what it did (`<subject> <status>`).
    async fn change(&self, path: &str, body: serde_json::Value) -> Result<(), String> {
        let result = self.call(reqwest::Method::POST, path, Some(body)).await?;
        self.print(&result, |done| {
            format!(
                "{} {}",
                done["subject"].as_str().unwrap_or_default(),
                done["status"].as_str().unwrap_or_default()
            )
        });
        Ok(())
    }

    pub async fn timeline(&self, invoice_id: &str) -> Result<(), String> {
        let timeline = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/invoices/{}/timeline", percent_encode(invoice_id)),
                None,
            )
            .await?;
        self.print(&timeline, |timeline| {
            let mut lines = vec![format!(
                "{} ({}, customer {}): {}, {} minor units {} due, due on {}, next action {}",
                timeline["invoice_id"].as_str().unwrap_or_default(),
                timeline["tenant"].as_str().unwrap_or_default(),
                timeline["customer_id"].as_str().unwrap_or_default(),
                timeline["state"].as_str().unwrap_or_default(),
                timeline["amount_due_minor"],
                timeline["currency"].as_str().unwrap_or_default(),
                timeline["due_on"].as_str().unwrap_or("-"),
                timeline["next_action_at"].as_str().unwrap_or("none"),
            )];
            for entry in timeline["entries"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "  {}  {:<13} {}",
                    entry["at"].as_str().unwrap_or_default(),
                    entry["kind"].as_str().unwrap_or_default(),
                    entry["summary"].as_str().unwrap_or_default()
                ));
            }
            lines.join("\n")
        });
        Ok(())
    }

    /// `GET /v1/dead-letters`, newest first.
    pub async fn list_dead_letters(&self, query: &[(&str, String)]) -> Result<(), String> {
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect();
        let path = if query.is_empty() {
            "/v1/dead-letters".to_string()
        } else {
            format!("/v1/dead-letters?{}", query.join("&"))
        };
        let letters = self.call(reqwest::Method::GET, &path, None).await?;
        self.print(&letters, |letters| {
            let rows: Vec<String> = letters
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| {
                    format!(
                        "{}  {}  {}  {:<22} {}[{}]@{}  event {}  {}{}",
                        row["id"],
                        row["failed_at"].as_str().unwrap_or_default(),
                        row["service"].as_str().unwrap_or_default(),
                        row["reason"].as_str().unwrap_or_default(),
                        row["source_topic"].as_str().unwrap_or_default(),
                        row["source_partition"],
                        row["source_offset"],
                        row["event_id"].as_str().unwrap_or("-"),
                        row["detail"].as_str().unwrap_or_default(),
                        match row["replayed_at"].as_str() {
                            Some(at) =>
                                format!("  (replayed {} times, last {at})", row["replay_count"]),
                            None => String::new(),
                        }
                    )
                })
                .collect();
            if rows.is_empty() {
                "No dead letter matches.".to_string()
            } else {
                rows.join("\n")
            }
        });
        Ok(())
    }

    /// `POST /v1/dead-letters/replay`.
    pub async fn replay_dead_letters(&self, body: Value) -> Result<(), String> {
        let result = self
            .call(reqwest::Method::POST, "/v1/dead-letters/replay", Some(body))
            .await?;
        self.print(&result, |done| {
            format!(
                "{} dead letters published again by {}: {}",
                done["replayed"],
                done["actor"].as_str().unwrap_or_default(),
                done["ids"]
                    .as_array()
                    .map(|ids| ids
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )
        });
        Ok(())
    }
}

/// Percent-encodes a query or path value (RFC 3986 unreserved characters are kept).
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The body without the options left unset: the API documents absent fields, not nulls or
/// empty lists.
fn without_unset(body: Value) -> Value {
    match body {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, value)| match value {
                    Value::Null => false,
                    Value::Array(items) => !items.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        other => other,
    }
}
