//! The admin API client.

use serde_json::{json, Value};

/// Calls the scheduler's admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    json: bool,
    /// `?tenant=` on the routes about one invoice or customer.
    tenant: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>, json: bool) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            json,
            tenant: None,
            http: reqwest::Client::new(),
        }
    }

    /// Names `tenant` on the routes about one invoice or customer.
    #[must_use]
    pub fn for_tenant(mut self, tenant: Option<&str>) -> Self {
        self.tenant = tenant.map(str::to_string);
        self
    }

    /// `path` about one invoice or customer, with `?tenant=` when one is named.
    fn scoped(&self, path: String) -> String {
        match &self.tenant {
            Some(tenant) => format!("{path}?tenant={}", percent_encode(tenant)),
            None => path,
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
            .map_err(|error| unreachable_message(&self.base, &error))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            Err(match status.as_u16() {
                401 => format!("{status}: the token is not accepted by {} (check --token or RELANCE_ADMIN_TOKEN)", self.base),
                403 => format!("{status}: {message}"),
                404 if body.get("error").is_none() => format!(
                    "{status}: {} has no such route; is --url (RELANCE_ADMIN_URL) the scheduler's admin API?",
                    self.base
                ),
                503 => format!("{status}: the scheduler cannot reach its database; try again shortly ({message})"),
                _ => format!("{status}: {message}"),
            })
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
        let now = chrono::Utc::now();
        self.print(&approvals, |approvals| approvals_table(approvals, now));
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
            &self.scoped(format!("/v1/{kind}/{}/pause", percent_encode(id))),
            json!({"reason": reason, "until": until}),
        )
        .await
    }

    pub async fn resume(&self, kind: &str, id: &str, reason: &str) -> Result<(), String> {
        self.change(
            &self.scoped(format!("/v1/{kind}/{}/resume", percent_encode(id))),
            json!({"reason": reason}),
        )
        .await
    }

    /// `POST /v1/customers/{id}/erase`.
    pub async fn erase_customer(&self, id: &str, legal_basis: &str) -> Result<(), String> {
        self.change(
            &self.scoped(format!("/v1/customers/{}/erase", percent_encode(id))),
            json!({"legal_basis": legal_basis}),
        )
        .await
    }

    /// `POST /v1/customers/{id}/recount-behaviour`.
    pub async fn recount_customer(
        &self,
        id: &str,
        reason: &str,
        dry_run: bool,
    ) -> Result<(), String> {
        let result = self
            .call(
                reqwest::Method::POST,
                &self.scoped(format!(
                    "/v1/customers/{}/recount-behaviour",
                    percent_encode(id)
                )),
                Some(json!({"reason": reason, "dry_run": dry_run})),
            )
            .await?;
        self.print(&result, |done| {
            format!(
                "{} {}{}",
                done["subject"].as_str().unwrap_or_default(),
                done["status"].as_str().unwrap_or_default(),
                drifted_sums(&done["drifted"])
            )
        });
        Ok(())
    }

    /// `POST /v1/behaviour-recounts`, page after page until the tenant's last customer.
    pub async fn recount_tenant(
        &self,
        tenant: &str,
        mut after: Option<String>,
        reason: &str,
        dry_run: bool,
    ) -> Result<(), String> {
        let mut checked = 0;
        let mut drifted = Vec::new();
        let mut not_recounted = Vec::new();
        loop {
            let mut request = json!({"tenant": tenant, "reason": reason, "dry_run": dry_run,
                                     "limit": 500});
            // The API declares `after` a string: the first page leaves it out.
            if let Some(after) = &after {
                request["after"] = json!(after);
            }
            let page = self
                .call(reqwest::Method::POST, "/v1/behaviour-recounts", Some(request))
                .await
                .map_err(|error| match &after {
                    Some(after) => format!(
                        "{error} (the customers up to {after} are done: resume with --after {after})"
                    ),
                    None => error,
                })?;
            checked += page["checked"].as_u64().unwrap_or(0);
            let found = page["drifted"].as_array().cloned().unwrap_or_default();
            if !self.json {
                for customer in &found {
                    println!(
                        "{} {}{}",
                        customer["customer_id"].as_str().unwrap_or_default(),
                        if dry_run { "drifted" } else { "repaired" },
                        drifted_sums(&customer["drifted"])
                    );
                }
            }
            let skipped = page["not_recounted"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !self.json {
                for customer in &skipped {
                    println!(
                        "{} not recounted: invoice {} does not read ({})",
                        customer["customer_id"].as_str().unwrap_or_default(),
                        customer["invoice_id"].as_str().unwrap_or_default(),
                        customer["detail"].as_str().unwrap_or_default()
                    );
                }
            }
            not_recounted.extend(skipped);
            drifted.extend(found);
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        let summary = json!({"tenant": tenant, "checked": checked, "dry_run": dry_run,
                             "drifted": drifted, "not_recounted": not_recounted});
        self.print(&summary, |summary| {
            let skipped = if not_recounted.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} not recounted (an invoice that does not read)",
                    not_recounted.len()
                )
            };
            format!(
                "{} customers of {tenant} checked, {} {}{skipped}",
                summary["checked"],
                drifted.len(),
                if dry_run {
                    "drifted (nothing written: --dry-run)"
                } else {
                    "repaired"
                }
            )
        });
        if not_recounted.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} customers could not be recounted: an invoice of theirs does not read",
                not_recounted.len()
            ))
        }
    }

    /// `POST /v1/invoices/{id}/{action}` with a reason (settle-claim, cancel-promise).
    pub async fn invoice_action(&self, id: &str, action: &str, reason: &str) -> Result<(), String> {
        self.change(
            &self.scoped(format!("/v1/invoices/{}/{action}", percent_encode(id))),
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
                &self.scoped(format!(
                    "/v1/invoices/{}/timeline",
                    percent_encode(invoice_id)
                )),
                None,
            )
            .await?;
        self.print(&timeline, |timeline| {
            let mut lines = vec![format!(
                "{} ({}, customer {}): {}, {} due, due on {}, next action {}",
                timeline["invoice_id"].as_str().unwrap_or_default(),
                timeline["tenant"].as_str().unwrap_or_default(),
                timeline["customer_id"].as_str().unwrap_or_default(),
                timeline["state"].as_str().unwrap_or_default(),
                crate::amounts::format_amount(
                    timeline["amount_due_minor"].as_i64().unwrap_or_default(),
                    timeline["currency"].as_str().unwrap_or("EUR")
                ),
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

/// What a person sees when the admin API cannot be reached at all.
fn unreachable_message(base: &str, error: &reqwest::Error) -> String {
    if error.is_connect() {
        format!("cannot connect to the admin API at {base}: is the scheduler running, and is --url (RELANCE_ADMIN_URL) right?")
    } else if error.is_timeout() {
        format!("the admin API at {base} did not answer in time")
    } else if error.is_builder() {
        format!("{base} is not a usable URL for --url (RELANCE_ADMIN_URL): {error}")
    } else {
        format!("the admin API at {base} could not be asked: {error}")
    }
}

/// The reminders awaiting approval as a table: who, how much, which step, since when.
pub(crate) fn approvals_table(approvals: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let rows: Vec<[String; 6]> = approvals
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let invoices = row["command"]["data"]["invoices"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut totals: std::collections::BTreeMap<String, i64> =
                std::collections::BTreeMap::new();
            for invoice in &invoices {
                let currency = invoice["amount_due"]["currency"]
                    .as_str()
                    .unwrap_or("EUR")
                    .to_string();
                *totals.entry(currency).or_default() += invoice["amount_due"]["amount_minor"]
                    .as_i64()
                    .unwrap_or_default();
            }
            let amount = totals
                .iter()
                .map(|(currency, minor)| crate::amounts::format_amount(*minor, currency))
                .collect::<Vec<_>>()
                .join(" + ");
            let customer = row["command"]["data"]["recipient"]["company"]
                .as_str()
                .map(|company| {
                    format!(
                        "{} ({company})",
                        row["customer_id"].as_str().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| row["customer_id"].as_str().unwrap_or_default().to_string());
            let waiting = row["scheduled_for"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .map(|at| waiting_for(now.signed_duration_since(at.with_timezone(&chrono::Utc))))
                .unwrap_or_default();
            [
                row["reminder_id"].as_str().unwrap_or_default().to_string(),
                customer,
                if amount.is_empty() {
                    "-".into()
                } else {
                    amount
                },
                format!(
                    "{} {}",
                    row["step_id"].as_str().unwrap_or_default(),
                    row["channel"].as_str().unwrap_or_default()
                ),
                format!(
                    "{} invoice(s)",
                    invoices
                        .len()
                        .max(row["invoice_ids"].as_array().map_or(0, Vec::len))
                ),
                waiting,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No reminder is waiting for approval.".into();
    }
    let header = [
        "REMINDER".to_string(),
        "CUSTOMER".into(),
        "AMOUNT DUE".into(),
        "STEP".into(),
        "INVOICES".into(),
        "WAITING".into(),
    ];
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(rows.iter())
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "3 h", "2 days": how long a reminder has waited.
fn waiting_for(elapsed: chrono::Duration) -> String {
    let minutes = elapsed.num_minutes().max(0);
    match minutes {
        0..=59 => format!("{minutes} min"),
        60..=2879 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / 1440),
    }
}

/// `: open_invoices, open_balance` for the sums that drifted, or nothing.
fn drifted_sums(drifted: &Value) -> String {
    let names: Vec<&str> = drifted
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        String::new()
    } else {
        format!(": {}", names.join(", "))
    }
}
