//! The internal admin API: approvals, pauses, timelines. Served on its own port, never next to
//! public traffic; every request carries a bearer token from the tokens file, and the token's
//! holder is recorded on everything the request changes. `docs/admin-api.yaml` describes it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use relance_config::{AdminRole, AdminToken, TenantScope, TopicSettings};
use relance_domain::{scoped, Invoice, InvoiceFact, Scoped};
use relance_events::{ApplyError, FactSource};
use relance_runtime::Clock;
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::scheduling::{self, CustomerHold, ManualAction, ReminderRow};
use relance_storage::{customers, invoices, StorageError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::commands::{record_of, with_approval, SOURCE};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::metrics::SchedulerMetrics;
use crate::policies::PolicySet;

/// What the admin API needs.
#[derive(Clone)]
pub struct AdminState {
    pub pool: PgPool,
    pub tokens: Arc<Vec<AdminToken>>,
    pub topics: TopicSettings,
    pub clock: Arc<dyn Clock>,
    pub metrics: SchedulerMetrics,
    pub relay: Arc<Notify>,
    pub policies: Arc<PolicySet>,
    pub templates: Arc<Templates>,
}

/// The templates the sender renders, as it resolves them for each tenant: an edited approval
/// must name one that exists for the customer's locale and suits the channel, or it would fail
/// for good at the sender.
pub struct Templates {
    store: relance_templates::TemplateStore,
    sender: relance_config::SenderSettings,
}

impl Templates {
    /// Loads `sender.templates_dir`.
    ///
    /// # Errors
    /// [`relance_templates::TemplateError`] when the folder does not load.
    pub fn load(
        sender: &relance_config::SenderSettings,
    ) -> Result<Self, relance_templates::TemplateError> {
        Ok(Self {
            store: relance_templates::TemplateStore::load(std::path::Path::new(
                &sender.templates_dir,
            ))?,
            sender: sender.clone(),
        })
    }

    /// Why `template` cannot carry a `channel` message of `tenant` in `locale`, if it cannot.
    fn refusal(&self, tenant: &str, locale: &str, template: &str, channel: &str) -> Option<String> {
        let set = self.sender.identity_of(tenant).template_set;
        let wanted = if channel == "sms" {
            relance_templates::Channel::Sms
        } else {
            relance_templates::Channel::Email
        };
        match self.store.channel_of(&set, locale, template) {
            Err(_) => Some(format!(
                "template {template} does not exist for locale {locale} (set {set}, nor default)"
            )),
            Ok(found) if found != wanted => Some(format!(
                "template {template} is written for {}, not {channel}: choose a template of that channel too",
                match found {
                    relance_templates::Channel::Sms => "sms",
                    relance_templates::Channel::Email => "email",
                }
            )),
            Ok(_) => None,
        }
    }
}

/// The token of the current request: its holder, its role and the tenants it may act for.
#[derive(Debug, Clone)]
pub(crate) struct Actor(
    pub(crate) String,
    pub(crate) AdminRole,
    pub(crate) TenantScope,
);

impl Actor {
    /// Refuses (403) a token whose role is below `role`.
    pub(crate) fn require(&self, role: AdminRole) -> Result<(), ApiError> {
        if self.1 >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token of {} is {}: this needs {}",
                    self.0,
                    self.1.as_str(),
                    role.as_str()
                ),
            ))
        }
    }

    /// Whether the token may see `tenant`'s data. What it may not see does not exist for it
    /// (404), so a token learns nothing of other tenants.
    pub(crate) fn sees(&self, tenant: &str) -> bool {
        self.2.allows(tenant)
    }

    /// Refuses (403) a token that is not for every tenant.
    pub(crate) fn require_all_tenants(&self) -> Result<(), ApiError> {
        if self.2 == TenantScope::All {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token of {} is not for every tenant (*): this spans tenants",
                    self.0
                ),
            ))
        }
    }
}

/// An API error: a status, a code and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is larger than the admin API accepts",
        )
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        tracing::error!(error = %error, error.cause_chain = ?relance_telemetry::ErrorChain(&error), "Admin request failed.");
        if error.is_transient() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; try again",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed; see the scheduler's logs",
            )
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        StorageError::Unreachable(error).into()
    }
}

impl From<relance_events::EventBuildError> for ApiError {
    fn from(error: relance_events::EventBuildError) -> Self {
        Self::bad_request(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

async fn authenticate(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let actor = presented.and_then(|presented| {
        state
            .tokens
            .iter()
            .find(|token| token.matches(presented))
            .map(|token| Actor(token.holder.clone(), token.role, token.tenants.clone()))
    });
    match actor {
        Some(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
        .into_response(),
    }
}

/// The largest request body the admin API reads (docs/admin-api.yaml: 413 beyond).
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The admin API's routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{reminder_id}", patch(edit_approval))
        .route("/v1/approvals/{reminder_id}/approve", post(approve))
        .route("/v1/approvals/{reminder_id}/reject", post(reject))
        .route("/v1/invoices/{invoice_id}/pause", post(pause_invoice))
        .route("/v1/invoices/{invoice_id}/resume", post(resume_invoice))
        .route("/v1/invoices/{invoice_id}/settle-claim", post(settle_claim))
        .route(
            "/v1/invoices/{invoice_id}/cancel-promise",
            post(cancel_promise),
        )
        .route("/v1/invoices/{invoice_id}/timeline", get(timeline))
        .route("/v1/customers/{customer_id}/pause", post(pause_customer))
        .route("/v1/customers/{customer_id}/resume", post(resume_customer))
        .route("/v1/customers/{customer_id}/erase", post(erase_customer))
        .route(
            "/v1/customers/{customer_id}/recount-behaviour",
            post(crate::behaviour::recount_customer),
        )
        .route(
            "/v1/behaviour-recounts",
            post(crate::behaviour::recount_tenant),
        )
        .route("/v1/policies", get(list_policies))
        .route("/v1/dead-letters", get(crate::dead_letters::list))
        .route("/v1/dead-letters/replay", post(crate::dead_letters::replay))
        // A reason or a note is at most 2,000 characters: nothing needs more than this.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(relance_telemetry::request_span))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Approval {
    reminder_id: uuid::Uuid,
    tenant: String,
    customer_id: String,
    invoice_ids: Vec<String>,
    kind: String,
    step_id: String,
    channel: String,
    segment: String,
    template: Option<String>,
    variant: Option<String>,
    scheduled_for: DateTime<Utc>,
    status: String,
    decided_by: Option<String>,
    decision_note: Option<String>,
    command: serde_json::Value,
}

impl From<ReminderRow> for Approval {
    fn from(row: ReminderRow) -> Self {
        Self {
            reminder_id: row.reminder_id,
            tenant: row.tenant,
            customer_id: row.customer_id,
            invoice_ids: row.invoice_ids,
            kind: row.kind,
            step_id: row.step_id,
            channel: row.channel,
            segment: row.segment,
            template: row.template,
            variant: row.variant,
            scheduled_for: row.scheduled_for,
            status: row.status,
            decided_by: row.decided_by,
            decision_note: row.decision_note,
            command: row.command,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ApprovalQuery {
    tenant: Option<String>,
    limit: Option<i64>,
}

async fn list_approvals(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(query): ApiQuery<ApprovalQuery>,
) -> Result<Json<Vec<Approval>>, ApiError> {
    let limit = crate::extract::page_limit(query.limit)?;
    let visible = match &actor.2 {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.as_slice()),
    };
    let rows =
        scheduling::awaiting_approval(&state.pool, query.tenant.as_deref(), visible, limit).await?;
    Ok(Json(rows.into_iter().map(Approval::from).collect()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reject {
    reason: Reason,
    #[serde(default)]
    note: Option<String>,
}

fn parse_reminder_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::not_found("reminder"))
}

async fn awaiting(
    connection: &mut PgConnection,
    reminder_id: uuid::Uuid,
    actor: &Actor,
) -> Result<ReminderRow, ApiError> {
    actor.require(AdminRole::CreditManager)?;
    let row = scheduling::reminder_for_update(connection, reminder_id)
        .await?
        .filter(|row| actor.sees(&row.tenant))
        .ok_or_else(|| ApiError::not_found("reminder"))?;
    if row.status != "awaiting_approval" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_awaiting_approval",
            format!("the reminder is {}, not awaiting approval", row.status),
        ));
    }
    Ok(row)
}

/// Applies relance facts to invoices in `transaction`: stores them, publishes the state
/// changes, and marks them for planning again.
async fn apply_facts(
    state: &AdminState,
    transaction: &mut PgConnection,
    tenant: &str,
    invoice_ids: &[String],
    fact: &InvoiceFact,
    cause_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxRecord>, ApiError> {
    let origin = FactSource {
        source: SOURCE,
        cause_id,
        cause_type: "relance.admin.manual_action",
    };
    relance_events::apply_invoice_fact(
        transaction,
        tenant,
        invoice_ids,
        fact,
        &origin,
        now,
        &state.topics.events,
    )
    .await
    .map_err(|error| match error {
        ApplyError::Storage(error) => error.into(),
        ApplyError::Refused(reason) => ApiError::new(StatusCode::CONFLICT, "refused", reason),
        ApplyError::Event(error) => error.into(),
    })
}

/// A manual action on `[tenant, subject kind, subject id]`.
pub(crate) fn manual_action(
    subject: [&str; 3],
    action: &str,
    actor: &Actor,
    reason: Option<String>,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> ManualAction {
    let [tenant, kind, id] = subject;
    let mut details = details;
    if let Some(fields) = details.as_object_mut() {
        fields.insert("actor_role".into(), json!(actor.1.as_str()));
    }
    ManualAction {
        tenant: tenant.to_string(),
        subject_kind: kind.to_string(),
        subject_id: id.to_string(),
        action: action.to_string(),
        actor: actor.0.clone(),
        reason,
        details,
        at: now,
    }
}

async fn approve(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(reminder_id): ApiPath<String>,
    ApiJson(decision): ApiJson<Approve>,
) -> Result<Json<Approval>, ApiError> {
    let reminder_id = parse_reminder_id(&reminder_id)?;
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let mut row = awaiting(&mut transaction, reminder_id, &actor).await?;
    // Going out now must not break the policy's gap with a reminder that went out meanwhile
    // (two reminders approved together would leave together).
    let gap_days = state
        .policies
        .for_tenant(&row.tenant)
        .rules
        .min_days_between_reminders;
    let gap = chrono::Duration::days(i64::from(gap_days));
    if row.kind == "message" && gap_days > 0 {
        if let Some(other) = scheduling::reminder_within_gap(
            &mut transaction,
            &row.tenant,
            &row.customer_id,
            row.reminder_id,
            now,
            gap,
        )
        .await?
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_soon",
                format!(
                    "another reminder to this customer is due {}; the policy keeps {gap_days} days between reminders: approve it from {}, or reject it",
                    other.format("%Y-%m-%d %H:%M UTC"),
                    (other + gap).format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
    }
    with_approval(&mut row.command, &actor.0, now, decision.note.as_deref())?;
    row.status = "queued".into();
    row.decided_by = Some(actor.0.clone());
    row.decided_at = Some(now);
    row.decision_note.clone_from(&decision.note);
    // It goes out now, the time the approval made it possible.
    row.scheduled_for = now;
    if let Some(data) = row.command.get_mut("data") {
        if data.get("scheduled_for").is_some() {
            data["scheduled_for"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
    }
    scheduling::decide_reminder(&mut transaction, &row).await?;
    let mut records = vec![record_of(&row)];
    records.extend(
        apply_facts(
            &state,
            &mut transaction,
            &row.tenant,
            &row.invoice_ids,
            &InvoiceFact::ApprovalSettled,
            &reminder_id.to_string(),
            now,
        )
        .await?,
    );
    outbox::enqueue(&mut transaction, &records).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&row.tenant, "reminder", &reminder_id.to_string()],
            "approve",
            &actor,
            decision.note.clone(),
            json!({"invoice_ids": row.invoice_ids}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    state.relay.notify_one();
    state.metrics.record_approval("approved");
    tracing::info!(reminder_id = %reminder_id, actor = %actor.0, "Reminder approved.");
    Ok(Json(row.into()))
}

async fn reject(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(reminder_id): ApiPath<String>,
    ApiJson(decision): ApiJson<Reject>,
) -> Result<Json<Approval>, ApiError> {
    let reminder_id = parse_reminder_id(&reminder_id)?;
    let reason = decision.reason.0;
    let reason = match decision.note {
        Some(note) if !note.trim().is_empty() => format!("{reason} ({note})"),
        _ => reason,
    };
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let mut row = awaiting(&mut transaction, reminder_id, &actor).await?;
    row.status = "rejected".into();
    row.decided_by = Some(actor.0.clone());
    row.decided_at = Some(now);
    row.decision_note = Some(reason.clone());
    scheduling::decide_reminder(&mut transaction, &row).await?;
    let records = apply_facts(
        &state,
        &mut transaction,
        &row.tenant,
        &row.invoice_ids,
        &InvoiceFact::ApprovalSettled,
        &reminder_id.to_string(),
        now,
    )
    .await?;
    outbox::enqueue(&mut transaction, &records).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&row.tenant, "reminder", &reminder_id.to_string()],
            "reject",
            &actor,
            Some(reason),
            json!({"invoice_ids": row.invoice_ids}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    state.relay.notify_one();
    state.metrics.record_approval("rejected");
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

async fn edit_approval(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(reminder_id): ApiPath<String>,
    ApiJson(edit): ApiJson<Edit>,
) -> Result<Json<Approval>, ApiError> {
    let reminder_id = parse_reminder_id(&reminder_id)?;
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let mut row = awaiting(&mut transaction, reminder_id, &actor).await?;
    if row.kind != "message" {
        return Err(ApiError::conflict(format!(
            "only messages (email, SMS) can be edited; this reminder is a {}",
            row.kind
        )));
    }
    let mut changes = serde_json::Map::new();
    if let Some(template) = &edit.template {
        relance_contracts::Code::parse(template.as_str())
            .map_err(|error| ApiError::bad_request(format!("template: {error}")))?;
        row.command["data"]["template"] = json!({"id": template});
        row.template = Some(template.clone());
        row.variant = None;
        row.experiment = None;
        changes.insert("template".into(), json!(template));
    }
    if let Some(channel) = &edit.channel {
        if !matches!(channel.as_str(), "email" | "sms") {
            return Err(ApiError::bad_request("channel: must be email or sms"));
        }
        row.command["data"]["channel"] = json!(channel);
        row.channel.clone_from(channel);
        changes.insert("channel".into(), json!(channel));
    }
    if changes.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to change: give a template or a channel",
        ));
    }
    let locale = row.command["data"]["locale"].as_str().unwrap_or("en");
    let template = row.template.clone().unwrap_or_default();
    if let Some(refusal) = state
        .templates
        .refusal(&row.tenant, locale, &template, &row.channel)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unusable_template",
            refusal,
        ));
    }
    scheduling::decide_reminder(&mut transaction, &row).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&row.tenant, "reminder", &reminder_id.to_string()],
            "edit",
            &actor,
            edit.note.clone(),
            serde_json::Value::Object(changes),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    state.metrics.record_approval("edited");
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pause {
    reason: Reason,
    #[serde(default)]
    until: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    reason: Reason,
}

/// Why a person acts: required, not blank (recorded with the token's holder).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Reason(pub(crate) String);

impl TryFrom<String> for Reason {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.trim().is_empty() {
            Err("must not be empty: say why".into())
        } else {
            Ok(Self(text))
        }
    }
}

#[derive(Debug, Serialize)]
struct Done {
    status: &'static str,
    subject: String,
    actor: String,
}

/// `?tenant=`: whose invoice or customer a route means. Ids are each tenant's own; without it,
/// the one tenant the token sees with that id is meant, and several are refused as ambiguous.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantQuery {
    pub(crate) tenant: Option<String>,
}

/// The tenant whose `what` (`invoice` or `customer`) `id` the request means, among those the
/// token sees: 404 when none, 409 `ambiguous_tenant` when several and `?tenant=` is missing.
pub(crate) async fn resolve_tenant(
    connection: &mut PgConnection,
    actor: &Actor,
    table: scheduling::IdTable,
    id: &str,
    requested: Option<String>,
) -> Result<String, ApiError> {
    let what = match table {
        scheduling::IdTable::Invoices => "invoice",
        scheduling::IdTable::Customers => "customer",
    };
    if let Some(tenant) = requested {
        return if actor.sees(&tenant) {
            Ok(tenant)
        } else {
            Err(ApiError::not_found(what))
        };
    }
    let visible = match &actor.2 {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.as_slice()),
    };
    let mut tenants = scheduling::tenants_with_id(connection, table, id, visible).await?;
    match tenants.len() {
        0 => Err(ApiError::not_found(what)),
        1 => Ok(tenants.remove(0)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous_tenant",
            format!(
                "{what} {id} exists in tenants {}: say which with ?tenant= (relancectl --tenant)",
                tenants.join(", ")
            ),
        )),
    }
}

async fn tenant_of_invoice(
    connection: &mut PgConnection,
    invoice_id: &str,
    requested: Option<String>,
    actor: &Actor,
) -> Result<Invoice, ApiError> {
    actor.require(AdminRole::CreditManager)?;
    let tenant = resolve_tenant(
        connection,
        actor,
        scheduling::IdTable::Invoices,
        invoice_id,
        requested,
    )
    .await?;
    invoices::load_for_update_with_customers(connection, &[scoped(&tenant, invoice_id)])
        .await?
        .1
        .remove(&scoped(&tenant, invoice_id))
        .ok_or_else(|| ApiError::not_found("invoice"))
}

async fn pause_invoice(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(invoice_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(pause): ApiJson<Pause>,
) -> Result<Json<Done>, ApiError> {
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let invoice = tenant_of_invoice(&mut transaction, &invoice_id, query.tenant, &actor).await?;
    let fact = InvoiceFact::HoldPlaced {
        until: pause.until,
        by: actor.0.clone(),
        note: Some(pause.reason.0.clone()),
    };
    let cause = uuid::Uuid::new_v4().to_string();
    let ids = vec![invoice_id.clone()];
    let mut records = apply_facts(
        &state,
        &mut transaction,
        &invoice.tenant,
        &ids,
        &fact,
        &cause,
        now,
    )
    .await?;
    let keys = [scoped(&invoice.tenant, &invoice_id)];
    let cancelled = outbox::cancel_pending_for_invoices(&mut transaction, &keys).await?;
    scheduling::cancel_reminders(&mut transaction, &keys, &cancelled, now).await?;
    outbox::enqueue(&mut transaction, &std::mem::take(&mut records)).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&invoice.tenant, "invoice", &invoice_id],
            "pause",
            &actor,
            Some(pause.reason.0),
            json!({"until": pause.until}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    state.relay.notify_one();
    Ok(Json(Done {
        status: "paused",
        subject: invoice_id,
        actor: actor.0,
    }))
}

/// A person's fact about an invoice, the action it is recorded as, and the status answered.
struct ManualFact {
    fact: InvoiceFact,
    action: &'static str,
    status: &'static str,
}

/// A person's fact about an invoice — a hold released, a customer's payment claim settled after
/// checking it (not found: dunning resumes; found: the payment itself closes the invoice), a
/// promise withdrawn — applied and recorded as a manual action.
async fn apply_manual_fact(
    state: &AdminState,
    actor: &Actor,
    invoice_id: String,
    requested_tenant: Option<String>,
    ManualFact {
        fact,
        action,
        status,
    }: ManualFact,
    reason: String,
) -> Result<Json<Done>, ApiError> {
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let invoice = tenant_of_invoice(&mut transaction, &invoice_id, requested_tenant, actor).await?;
    let cause = uuid::Uuid::new_v4().to_string();
    let records = apply_facts(
        state,
        &mut transaction,
        &invoice.tenant,
        std::slice::from_ref(&invoice_id),
        &fact,
        &cause,
        now,
    )
    .await?;
    outbox::enqueue(&mut transaction, &records).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&invoice.tenant, "invoice", &invoice_id],
            action,
            actor,
            Some(reason),
            json!({}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    state.relay.notify_one();
    Ok(Json(Done {
        status,
        subject: invoice_id,
        actor: actor.0.clone(),
    }))
}

async fn settle_claim(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(invoice_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(resume): ApiJson<Resume>,
) -> Result<Json<Done>, ApiError> {
    apply_manual_fact(
        &state,
        &actor,
        invoice_id,
        query.tenant,
        ManualFact {
            fact: InvoiceFact::PaymentClaimSettled,
            action: "settle_claim",
            status: "claim_settled",
        },
        resume.reason.0,
    )
    .await
}

async fn cancel_promise(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(invoice_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(resume): ApiJson<Resume>,
) -> Result<Json<Done>, ApiError> {
    apply_manual_fact(
        &state,
        &actor,
        invoice_id,
        query.tenant,
        ManualFact {
            fact: InvoiceFact::PromiseCancelled,
            action: "cancel_promise",
            status: "promise_cancelled",
        },
        resume.reason.0,
    )
    .await
}

async fn resume_invoice(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(invoice_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(resume): ApiJson<Resume>,
) -> Result<Json<Done>, ApiError> {
    apply_manual_fact(
        &state,
        &actor,
        invoice_id,
        query.tenant,
        ManualFact {
            fact: InvoiceFact::HoldReleased,
            action: "resume",
            status: "resumed",
        },
        resume.reason.0,
    )
    .await
}

async fn customer_tenant(
    connection: &mut PgConnection,
    customer_id: &str,
    requested: Option<String>,
    actor: &Actor,
) -> Result<String, ApiError> {
    actor.require(AdminRole::CreditManager)?;
    let tenant = resolve_tenant(
        connection,
        actor,
        scheduling::IdTable::Customers,
        customer_id,
        requested,
    )
    .await?;
    let key = scoped(&tenant, customer_id);
    customers::load_for_update(connection, std::slice::from_ref(&key))
        .await?
        .remove(&key)
        .map(|facts| facts.tenant)
        .ok_or_else(|| ApiError::not_found("customer"))
}

/// The keys of a customer's invoices.
async fn invoices_of_customer(
    connection: &mut PgConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<Scoped>, ApiError> {
    Ok(
        scheduling::invoice_ids_of_customer(connection, tenant, customer_id)
            .await?
            .iter()
            .map(|invoice_id| scoped(tenant, invoice_id))
            .collect(),
    )
}

async fn pause_customer(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(pause): ApiJson<Pause>,
) -> Result<Json<Done>, ApiError> {
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let tenant = customer_tenant(&mut transaction, &customer_id, query.tenant, &actor).await?;
    let hold = CustomerHold {
        until: pause.until,
        by: actor.0.clone(),
        reason: Some(pause.reason.0.clone()),
    };
    scheduling::set_customer_hold(&mut transaction, &tenant, &customer_id, Some(&hold)).await?;
    let ids = invoices_of_customer(&mut transaction, &tenant, &customer_id).await?;
    let cancelled = outbox::cancel_pending_for_invoices(&mut transaction, &ids).await?;
    scheduling::cancel_reminders(&mut transaction, &ids, &cancelled, now).await?;
    scheduling::mark_for_replanning(&mut transaction, &ids, now).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&tenant, "customer", &customer_id],
            "pause",
            &actor,
            Some(pause.reason.0),
            json!({"until": pause.until}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    Ok(Json(Done {
        status: "paused",
        subject: customer_id,
        actor: actor.0,
    }))
}

async fn resume_customer(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(resume): ApiJson<Resume>,
) -> Result<Json<Done>, ApiError> {
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let tenant = customer_tenant(&mut transaction, &customer_id, query.tenant, &actor).await?;
    scheduling::set_customer_hold(&mut transaction, &tenant, &customer_id, None).await?;
    let ids = invoices_of_customer(&mut transaction, &tenant, &customer_id).await?;
    scheduling::mark_for_replanning(&mut transaction, &ids, now).await?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&tenant, "customer", &customer_id],
            "resume",
            &actor,
            Some(resume.reason.0),
            json!({}),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    Ok(Json(Done {
        status: "resumed",
        subject: customer_id,
        actor: actor.0,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Erase {
    /// Why the data may or must go (GDPR article 17: the customer's request of <date>...).
    legal_basis: Reason,
}

#[derive(Debug, Serialize)]
struct ErasedAnswer {
    status: &'static str,
    subject: String,
    actor: String,
    erased: relance_storage::erasure::Erased,
}

/// `POST /v1/customers/{id}/erase`: the right to erasure. An operator's act, recorded with the
/// legal basis; the customer's dunning is held for good.
async fn erase_customer(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(erase): ApiJson<Erase>,
) -> Result<Json<ErasedAnswer>, ApiError> {
    actor.require(AdminRole::Operator)?;
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let tenant = customer_tenant(&mut transaction, &customer_id, query.tenant, &actor).await?;
    let erased =
        relance_storage::erasure::erase_customer(&mut transaction, &tenant, &customer_id, &actor.0)
            .await?
            .ok_or_else(|| ApiError::not_found("customer"))?;
    scheduling::record_manual_action(
        &mut transaction,
        &manual_action(
            [&tenant, "customer", &customer_id],
            "erase",
            &actor,
            Some(erase.legal_basis.0),
            json!(erased),
            now,
        ),
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(customer_id = %customer_id, actor = %actor.0, "Customer's personal data erased.");
    Ok(Json(ErasedAnswer {
        status: "erased",
        subject: customer_id,
        actor: actor.0,
        erased,
    }))
}

#[derive(Debug, Serialize)]
struct TimelineEntry {
    at: DateTime<Utc>,
    kind: &'static str,
    summary: String,
    details: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct Timeline {
    invoice_id: String,
    tenant: String,
    customer_id: String,
    state: String,
    amount_due_minor: i64,
    currency: Option<String>,
    due_on: Option<NaiveDate>,
    next_action_at: Option<DateTime<Utc>>,
    plan: Option<serde_json::Value>,
    entries: Vec<TimelineEntry>,
}

/// An amount as a person reads it (`€400.00`), not minor units.
fn amount(minor: i64, currency: &str) -> String {
    relance_templates::format::money(minor, currency, "en")
}

/// The events an invoice's facts record, oldest first.
fn fact_entries(invoice: &Invoice) -> Vec<TimelineEntry> {
    let mut entries = Vec::new();
    let mut push = |at: DateTime<Utc>, summary: String, details: serde_json::Value| {
        entries.push(TimelineEntry {
            at,
            kind: "event",
            summary,
            details,
        });
    };
    if let Some(issued) = &invoice.issued {
        let total = invoice
            .total
            .as_ref()
            .map(|total| amount(total.value.amount_minor, total.value.currency.as_str()));
        let due = invoice.due_on.as_ref().map(|due| due.value.to_string());
        push(
            issued.time,
            match (total, due) {
                (Some(total), Some(due)) => format!("Invoice issued: {total}, due on {due}"),
                _ => "Invoice issued".into(),
            },
            json!({"event_id": issued.event_id}),
        );
    }
    // An amount in another currency than the invoice's is kept but left out of the sums.
    let invoice_currency = invoice.currency().cloned();
    let note = |currency: &relance_domain::Currency| match &invoice_currency {
        Some(own) if own != currency => {
            format!(" — in another currency than the invoice's ({own}): kept, not counted")
        }
        _ => String::new(),
    };
    for (id, credit) in &invoice.credits {
        push(
            credit.at,
            format!(
                "Credit note {id}: {}{}",
                amount(credit.amount.amount_minor, credit.amount.currency.as_str()),
                note(&credit.amount.currency)
            ),
            json!({"event_id": credit.version.event_id}),
        );
    }
    for (id, payment) in &invoice.payments {
        push(
            payment.at,
            format!(
                "Payment {id}: {}{}",
                amount(
                    payment.amount.amount_minor,
                    payment.amount.currency.as_str()
                ),
                note(&payment.amount.currency)
            ),
            json!({"event_id": payment.version.event_id}),
        );
    }
    for (id, refund) in &invoice.refunds {
        push(
            refund.at,
            format!(
                "{:?} {id}: {}{}",
                refund.kind,
                amount(refund.amount.amount_minor, refund.amount.currency.as_str()),
                note(&refund.amount.currency)
            ),
            json!({"event_id": refund.version.event_id}),
        );
    }
    for (id, dispute) in &invoice.disputes {
        push(
            dispute.version.time,
            format!(
                "Dispute {id} {}",
                if dispute.resolved { "resolved" } else { "open" }
            ),
            json!({"event_id": dispute.version.event_id}),
        );
    }
    for (id, failure) in &invoice.payment_failures {
        push(
            failure.failed_at,
            format!("Payment {id} failed: {}", failure.failure_code),
            json!({"attempt": failure.attempt}),
        );
    }
    if let Some(voided) = &invoice.voided {
        push(
            voided.time,
            "Invoice voided".into(),
            json!({"event_id": voided.event_id}),
        );
    }
    if let Some(hold) = &invoice.hold {
        let summary = if hold.value.is_some() {
            "Dunning held"
        } else {
            "Hold released"
        };
        push(
            hold.version.time,
            summary.into(),
            serde_json::to_value(&hold.value).unwrap_or_default(),
        );
    }
    if let Some(promise) = &invoice.promise {
        push(
            promise.version.time,
            "Promise to pay".into(),
            serde_json::to_value(&promise.value).unwrap_or_default(),
        );
    }
    if let Some(escalation) = &invoice.escalation {
        push(
            escalation.version.time,
            format!("Escalated to {:?}", escalation.value),
            json!({}),
        );
    }
    entries
}

async fn timeline(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(invoice_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let tenant = {
        let mut connection = state.pool.acquire().await?;
        resolve_tenant(
            &mut connection,
            &actor,
            scheduling::IdTable::Invoices,
            &invoice_id,
            query.tenant,
        )
        .await?
    };
    let overview = scheduling::invoice_overview(&state.pool, &tenant, &invoice_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invoice"))?;
    let mut entries = fact_entries(&overview.invoice);
    let reminders = scheduling::reminders_of_invoice(&state.pool, &tenant, &invoice_id).await?;
    let mut subjects = vec![
        ("invoice", invoice_id.clone()),
        ("customer", overview.invoice.customer_id.clone()),
    ];
    let changes =
        scheduling::reminder_changes_of_invoice(&state.pool, &tenant, &invoice_id).await?;
    for reminder in reminders {
        subjects.push(("reminder", reminder.reminder_id.to_string()));
        let (decided_at, changed_at) = changes
            .get(&reminder.reminder_id)
            .copied()
            .unwrap_or((reminder.scheduled_for, reminder.scheduled_for));
        let what = format!(
            "{} {} ({}{})",
            reminder.kind,
            reminder.step_id,
            reminder.channel,
            reminder
                .template
                .as_deref()
                .map(|template| format!(", template {template}"))
                .unwrap_or_default()
        );
        let details = json!({
            "reminder_id": reminder.reminder_id, "template": reminder.template, "variant": reminder.variant,
            "scheduled_for": reminder.scheduled_for, "decided_by": reminder.decided_by,
            "decision_note": reminder.decision_note,
        });
        entries.push(TimelineEntry {
            at: decided_at,
            kind: "reminder",
            summary: format!(
                "Reminder decided: {what}, for {}",
                reminder.scheduled_for.format("%Y-%m-%d %H:%M UTC")
            ),
            details: details.clone(),
        });
        // A change of status is told when it happened: a reminder cancelled by a payment comes
        // after the payment.
        let outcome = match reminder.status.as_str() {
            "cancelled" => Some(
                "Reminder cancelled (a payment, void, credit, dispute or pause came first)"
                    .to_string(),
            ),
            "rejected" => Some(format!(
                "Reminder rejected by {}{}",
                reminder.decided_by.as_deref().unwrap_or("a person"),
                reminder
                    .decision_note
                    .as_deref()
                    .map(|note| format!(": {note}"))
                    .unwrap_or_default()
            )),
            "awaiting_approval" => Some("Reminder waiting for a person's approval".to_string()),
            _ => None,
        };
        if let Some(summary) = outcome {
            entries.push(TimelineEntry {
                at: changed_at,
                kind: "reminder",
                summary,
                details,
            });
        }
    }
    for delivery in
        relance_storage::deliveries::for_invoice(&state.pool, &tenant, &invoice_id).await?
    {
        let summary = match delivery.status.as_str() {
            "sent" => format!(
                "Message sent by {} through {}",
                delivery.channel,
                delivery.provider.as_deref().unwrap_or("the provider")
            ),
            "skipped" => format!(
                "Message not sent: {}",
                delivery.skip_reason.as_deref().unwrap_or("skipped")
            ),
            "failed" => format!(
                "Message failed: {}",
                delivery
                    .error_code
                    .as_deref()
                    .or(delivery.error_class.as_deref())
                    .unwrap_or("refused by the provider")
            ),
            "unknown" => "Message in doubt: a person must check with the provider".to_string(),
            other => format!("Message {other}"),
        };
        entries.push(TimelineEntry {
            at: delivery
                .sent_at
                .or(delivery.finished_at)
                .unwrap_or(delivery.received_at),
            kind: "delivery",
            summary,
            details: json!({
                "delivery_id": delivery.delivery_id, "reminder_id": delivery.reminder_id,
                "status": delivery.status, "attempts": delivery.attempts,
                "provider_message_id": delivery.provider_message_id,
            }),
        });
    }
    for (kind, id) in &subjects {
        for action in scheduling::manual_actions_of(&state.pool, &tenant, kind, id).await? {
            entries.push(TimelineEntry {
                at: action.at,
                kind: "manual_action",
                summary: format!(
                    "{} {} by {}",
                    action.action, action.subject_kind, action.actor
                ),
                details: json!({"reason": action.reason, "details": action.details}),
            });
        }
    }
    for entry in &mut entries {
        // The spec promises an object: a fact without details has an empty one.
        if !entry.details.is_object() {
            entry.details = json!({});
        }
    }
    entries.sort_by_key(|entry| entry.at);
    let invoice = overview.invoice;
    Ok(Json(Timeline {
        invoice_id: invoice.invoice_id,
        tenant: invoice.tenant,
        customer_id: invoice.customer_id,
        state: overview.state,
        amount_due_minor: overview.amount_due_minor,
        currency: overview.currency,
        due_on: overview.due_on,
        next_action_at: overview.next_action_at,
        plan: overview.plan,
        entries,
    }))
}

async fn list_policies(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
) -> Json<serde_json::Value> {
    let policies: Vec<_> = state
        .policies
        .all()
        .filter(|(tenant, _)| *tenant == "*" || tenant.is_empty() || actor.sees(tenant))
        .map(|(tenant, policy)| json!({"tenant": tenant, "policy": policy.policy, "version": policy.version, "segments": policy.segments.iter().map(|segment| &segment.id).collect::<Vec<_>>()}))
        .collect();
    Json(json!(policies))
}
