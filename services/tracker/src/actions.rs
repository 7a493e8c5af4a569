//! The customer action pages. A GET only shows a page, and is recorded as a click of its link
//! (classified human or machine like any click, never an action); state changes happen on the
//! POST the customer makes from it, so mail scanners that follow every link change nothing.
//! Each action is recorded once per link (its id derives from the token and the action):
//! submitting twice shows "already recorded".

use std::collections::HashMap;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Days, NaiveDate, Utc};
use relance_contracts::commands::{CreateTaskV1, TaskKind, TaskPriority};
use relance_contracts::dunning::{
    CustomerActionKind, CustomerActionV1, InteractionSource, LinkKind,
};
use relance_contracts::{Code, Id, Money, Recipient, Reference, Text};
use relance_domain::InvoiceFact;
use relance_events::{apply_invoice_fact, ApplyError, FactSource};
use relance_links::{LinkAction, LinkClaims};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::tracking::{self, InvoicePage, NewAction, TrackedDelivery};
use relance_storage::{scheduling, StorageError};
use relance_templates::format::{date, money};
use tera::Context;
use uuid::Uuid;

use crate::events::{self, SOURCE};
use crate::interactions::{self, Seen};
use crate::pages::{CompanyView, InvoiceView};
use crate::public::{not_found, AppState, Checked};

/// Namespace of action ids, derived from the token and the action.
const ACTION_NAMESPACE: Uuid = Uuid::from_u128(0x51f3_0c8e_2a6d_4b17_9e40_7d2c_61a8_f3b5);

/// Dispute reasons the form offers.
const DISPUTE_REASONS: [&str; 5] = [
    "not_received",
    "incorrect_amount",
    "quality",
    "duplicate",
    "other",
];

/// What a page needs, once the token checked out.
struct Loaded {
    claims: LinkClaims,
    invoice: InvoicePage,
    locale: String,
    delivery: Option<TrackedDelivery>,
}

fn page_response(
    state: &AppState,
    status: StatusCode,
    locale: &str,
    page: &str,
    context: &Context,
) -> Response {
    match state.pages.render(locale, page, context) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(page, locale, error, "An action page cannot be rendered.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong; please try again later.\n",
            )
                .into_response()
        }
    }
}

fn server_error(error: &StorageError) -> Response {
    tracing::warn!(error = %error, "An action could not be handled.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "We cannot handle this right now; please try again in a few minutes.\n",
    )
        .into_response()
}

fn context(state: &AppState, loaded: &Loaded, title_key: &str) -> Context {
    let identity = state.settings.sender.identity_of(&loaded.claims.t);
    let mut context = Context::new();
    context.insert(
        "company",
        &CompanyView {
            name: identity.company_name.clone(),
            email: identity.company_email.clone(),
            phone: Some(identity.company_phone.clone()).filter(|phone| !phone.trim().is_empty()),
        },
    );
    let invoice = &loaded.invoice;
    context.insert(
        "invoice",
        &InvoiceView {
            number: invoice
                .number
                .clone()
                .unwrap_or_else(|| invoice.invoice_id.clone()),
            amount_due: money(
                invoice.amount_due_minor,
                invoice.currency.as_deref().unwrap_or("EUR"),
                &loaded.locale,
            ),
            due_on: invoice.due_on.map(|due| date(due, &loaded.locale)),
        },
    );
    context.insert("title", &state.pages.message(&loaded.locale, title_key));
    context.insert("error", &Option::<String>::None);
    context
}

/// The expired-link page, offering a fresh link.
pub async fn expired_page(state: &AppState, claims: &LinkClaims, token: &str) -> Response {
    let invoice = match tracking::invoice_page(&state.pool, &claims.t, &claims.i).await {
        Ok(Some(invoice)) if invoice.tenant == claims.t && invoice.customer_id == claims.c => {
            invoice
        }
        Ok(_) => return not_found(),
        Err(error) => return server_error(&error),
    };
    let locale = state.pages.locale(invoice.locale.as_deref());
    let loaded = Loaded {
        claims: claims.clone(),
        invoice,
        locale,
        delivery: None,
    };
    let mut context = context(state, &loaded, "title_expired");
    context.insert("renew_path", &format!("/l/renew/{token}"));
    page_response(state, StatusCode::GONE, &loaded.locale, "expired", &context)
}

/// Checks the token and loads the invoice, or answers for it (404, expired page).
async fn load(
    state: &AppState,
    token: &str,
    action: LinkAction,
    route: &str,
) -> Result<Loaded, Response> {
    let claims = match state.check(token, action) {
        Some(Checked::Valid(claims)) => claims,
        Some(Checked::Expired(claims)) => {
            state.metrics.link(route, "expired");
            return Err(expired_page(state, &claims, token).await);
        }
        None => {
            state.metrics.link(route, "not_found");
            return Err(not_found());
        }
    };
    let invoice = match tracking::invoice_page(&state.pool, &claims.t, &claims.i).await {
        Ok(Some(invoice)) if invoice.tenant == claims.t && invoice.customer_id == claims.c => {
            invoice
        }
        Ok(_) => {
            state.metrics.link(route, "not_found");
            return Err(not_found());
        }
        Err(error) => return Err(server_error(&error)),
    };
    let delivery = tracking::delivery_of_reminder(&state.pool, claims.r)
        .await
        .map_err(|error| server_error(&error))?
        .filter(|delivery| delivery.tenant == claims.t);
    let locale = state.pages.locale(invoice.locale.as_deref());
    state.metrics.link(route, "ok");
    Ok(Loaded {
        claims,
        invoice,
        locale,
        delivery,
    })
}

fn closed_page(state: &AppState, loaded: &Loaded) -> Response {
    let mut context = context(state, loaded, "title_unavailable");
    context.insert("message", &state.pages.message(&loaded.locale, "closed"));
    page_response(
        state,
        StatusCode::OK,
        &loaded.locale,
        "unavailable",
        &context,
    )
}

/// Records a GET (or HEAD) of a link as a click of `link`: a click, never an action, whatever
/// the page then shows. Recording must not stand between the customer and the page, so a
/// failure is logged, not shown.
async fn record_click(
    state: &AppState,
    loaded: &Loaded,
    link: LinkKind,
    method: &Method,
    headers: &HeaderMap,
) {
    let Some(delivery) = &loaded.delivery else {
        return;
    };
    let agent = interactions::user_agent(headers);
    let seen = Seen {
        delivery,
        invoice_id: Some(&loaded.claims.i),
        link: Some(link),
        source: InteractionSource::TrackedLink,
        provider: None,
        user_agent: agent.as_deref(),
        head_request: *method == Method::HEAD,
        provider_machine_flag: None,
        at: state.now(),
    };
    if let Err(error) = interactions::record(state, &seen).await {
        tracing::warn!(
            error = %error,
            link = interactions::link_label(link),
            "A click could not be recorded."
        );
    }
}

/// `GET /l/pay/{token}`: records the click and sends the customer to the invoice's payment page.
pub async fn pay(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let loaded = match load(&state, &token, LinkAction::Pay, "pay").await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    record_click(&state, &loaded, LinkKind::Pay, &method, &headers).await;
    if loaded.invoice.state == "closed" {
        return closed_page(&state, &loaded);
    }
    let payment_url = loaded.delivery.as_ref().and_then(|delivery| {
        delivery.command["data"]["invoices"]
            .as_array()
            .and_then(|invoices| {
                invoices
                    .iter()
                    .find(|invoice| {
                        invoice["invoice_id"].as_str() == Some(loaded.claims.i.as_str())
                    })
                    .and_then(|invoice| invoice["payment_url"].as_str())
                    .map(str::to_string)
            })
    });
    // The ingestor refuses such URLs; checked again here because the settings may have
    // changed since the reminder was sent, and a redirect is the door an attacker wants.
    let hosts = state.settings.sender.payment_hosts();
    let checked = payment_url.filter(|url| match hosts.check(&loaded.claims.t, url) {
        Ok(()) => true,
        Err(error) => {
            state.metrics.link("pay", "payment_url_refused");
            tracing::warn!(
                reminder_id = %loaded.claims.r,
                invoice_id = %loaded.claims.i,
                error = %error,
                "a payment URL is refused: the customer is shown how to pay instead"
            );
            false
        }
    });
    match checked {
        Some(url) => Redirect::to(&url).into_response(),
        None => how_to_pay_page(&state, &loaded),
    }
}

/// How to pay an invoice without a payment page: the tenant's payment instructions (bank
/// details, the reference to quote) and whom to contact.
fn how_to_pay_page(state: &AppState, loaded: &Loaded) -> Response {
    let identity = state.settings.sender.identity_of(&loaded.claims.t);
    let mut context = context(state, loaded, "title_how_to_pay");
    let instructions = identity.payment_instructions.trim();
    context.insert(
        "instructions",
        &Some(instructions).filter(|text| !text.is_empty()),
    );
    page_response(
        state,
        StatusCode::OK,
        &loaded.locale,
        "how_to_pay",
        &context,
    )
}

/// Which action a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    AlreadyPaid,
    Dispute,
    Promise,
    PaymentPlan,
}

impl Action {
    fn link(self) -> LinkAction {
        match self {
            Self::AlreadyPaid => LinkAction::AlreadyPaid,
            Self::Dispute => LinkAction::Dispute,
            Self::Promise => LinkAction::PromiseToPay,
            Self::PaymentPlan => LinkAction::PaymentPlan,
        }
    }

    fn page(self) -> &'static str {
        match self {
            Self::AlreadyPaid => "already_paid",
            Self::Dispute => "dispute",
            Self::Promise => "promise",
            Self::PaymentPlan => "payment_plan",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::AlreadyPaid => "already_paid",
            Self::Dispute => "dispute",
            Self::Promise => "promise_to_pay",
            Self::PaymentPlan => "payment_plan_request",
        }
    }
}

/// The customer's date at `now`: in their time zone, else the tenant policy's default one, as
/// the scheduler plans it.
fn customer_today(state: &AppState, loaded: &Loaded, now: DateTime<Utc>) -> NaiveDate {
    let policy = state.policies.for_tenant(&loaded.claims.t);
    let zone = loaded
        .invoice
        .timezone
        .as_deref()
        .and_then(relance_domain::calendar::zone)
        .or_else(|| relance_domain::calendar::zone(&policy.rules.default_timezone))
        .unwrap_or(relance_domain::calendar::UNKNOWN_ZONE);
    relance_domain::calendar::local_date(zone, now)
}

/// The promise window for the tenant: from the customer's tomorrow to the policy's limit.
fn promise_window(state: &AppState, tenant: &str, today: NaiveDate) -> (NaiveDate, NaiveDate, u32) {
    let pauses = &state.policies.for_tenant(tenant).rules.pauses;
    let earliest = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let latest = today
        .checked_add_days(Days::new(u64::from(pauses.max_promise_days.max(1))))
        .unwrap_or(earliest);
    (earliest, latest, pauses.promise_grace_days)
}

fn form_context(
    state: &AppState,
    loaded: &Loaded,
    action: Action,
    error: Option<String>,
) -> Context {
    let mut context = context(state, loaded, &format!("title_{}", action.page()));
    if action == Action::Promise {
        let (earliest, latest, _) = promise_window(
            state,
            &loaded.claims.t,
            customer_today(state, loaded, state.now()),
        );
        context.insert("earliest", &earliest.to_string());
        context.insert("latest", &latest.to_string());
        context.insert("earliest_text", &date(earliest, &loaded.locale));
        context.insert("latest_text", &date(latest, &loaded.locale));
    }
    context.insert("error", &error);
    context
}

async fn show(
    state: AppState,
    token: String,
    action: Action,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let loaded = match load(&state, &token, action.link(), action.page()).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    // Every GET of a link is a click, scanners' included (classified apart); only the POST acts.
    let link = interactions::link_kind(action.link());
    record_click(&state, &loaded, link, method, headers).await;
    if loaded.invoice.state == "closed" {
        return closed_page(&state, &loaded);
    }
    let context = form_context(&state, &loaded, action, None);
    page_response(
        &state,
        StatusCode::OK,
        &loaded.locale,
        action.page(),
        &context,
    )
}

pub async fn already_paid_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    show(state, token, Action::AlreadyPaid, &method, &headers).await
}

pub async fn dispute_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    show(state, token, Action::Dispute, &method, &headers).await
}

pub async fn promise_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    show(state, token, Action::Promise, &method, &headers).await
}

pub async fn payment_plan_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    show(state, token, Action::PaymentPlan, &method, &headers).await
}

/// What a submitted form says, checked.
struct Submission {
    reference: Option<String>,
    reason: Option<String>,
    promised_on: Option<NaiveDate>,
    message: Option<String>,
}

fn field(form: &HashMap<String, String>, name: &str, max: usize) -> Option<String> {
    form.get(name)
        .map(|value| {
            value
                .trim()
                .chars()
                .filter(|c| !c.is_control() || *c == '\n')
                .take(max)
                .collect::<String>()
        })
        .filter(|value| !value.is_empty())
}

fn validate(
    state: &AppState,
    loaded: &Loaded,
    action: Action,
    form: &HashMap<String, String>,
) -> Result<Submission, &'static str> {
    let message = field(form, "message", 1000);
    match action {
        Action::AlreadyPaid => Ok(Submission {
            reference: field(form, "reference", 100),
            reason: None,
            promised_on: None,
            message,
        }),
        Action::Dispute => {
            let reason = field(form, "reason", 40)
                .filter(|reason| DISPUTE_REASONS.contains(&reason.as_str()))
                .ok_or("invalid_reason")?;
            Ok(Submission {
                reference: None,
                reason: Some(reason),
                promised_on: None,
                message,
            })
        }
        Action::Promise => {
            let (earliest, latest, _) = promise_window(
                state,
                &loaded.claims.t,
                customer_today(state, loaded, state.now()),
            );
            let promised_on = field(form, "promised_on", 10)
                .and_then(|text| NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok())
                .filter(|day| *day >= earliest && *day <= latest)
                .ok_or("invalid_date")?;
            Ok(Submission {
                reference: None,
                reason: None,
                promised_on: Some(promised_on),
                message,
            })
        }
        Action::PaymentPlan => {
            let installments = field(form, "installments", 2)
                .filter(|value| ["2", "3", "6"].contains(&value.as_str()))
                .unwrap_or_else(|| "3".into());
            let note = match message {
                Some(message) => format!("{installments} payments requested. {message}"),
                None => format!("{installments} payments requested."),
            };
            Ok(Submission {
                reference: None,
                reason: None,
                promised_on: None,
                message: Some(note),
            })
        }
    }
}

fn recipient_of(delivery: Option<&TrackedDelivery>) -> Option<Recipient> {
    delivery.and_then(|delivery| {
        serde_json::from_value(delivery.command["data"]["recipient"].clone()).ok()
    })
}

fn task(
    state: &AppState,
    loaded: &Loaded,
    action_id: Uuid,
    kind: TaskKind,
    priority: TaskPriority,
    reason: String,
    note: Option<&str>,
) -> Option<OutboxRecord> {
    let now = state.now();
    let amount_due = loaded
        .invoice
        .currency
        .as_deref()
        .and_then(|currency| relance_contracts::Currency::parse(currency).ok())
        .and_then(|currency| Money::new(loaded.invoice.amount_due_minor, currency).ok())
        .map(|money| vec![money]);
    let segment = loaded
        .delivery
        .as_ref()
        .and_then(|delivery| Code::parse(&delivery.segment).ok());
    let data = CreateTaskV1 {
        task_id: Uuid::new_v5(&ACTION_NAMESPACE, format!("{action_id}:task").as_bytes()),
        idempotency_key: format!("{}:customer_action:{action_id}", loaded.claims.t),
        customer_id: Id::parse(&loaded.claims.c).ok()?,
        kind,
        priority,
        due_on: customer_today(state, loaded, now),
        invoice_ids: vec![Id::parse(&loaded.claims.i).ok()?],
        amount_due,
        contact: recipient_of(loaded.delivery.as_ref()),
        reason: Text::parse(reason).ok(),
        segment,
        step: loaded.delivery.as_ref().and_then(|delivery| {
            serde_json::from_value(delivery.command["data"]["step"].clone()).ok()
        }),
        customer_note: note.and_then(|note| Text::parse(note).ok()),
        approval: None,
    };
    events::record(
        &state.settings.kafka.topics.tasks,
        &loaded.claims.t,
        &loaded.claims.c,
        data.task_id,
        now,
        data,
    )
}

async fn submit(
    state: AppState,
    token: String,
    action: Action,
    form: HashMap<String, String>,
) -> Response {
    let loaded = match load(&state, &token, action.link(), action.page()).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    if loaded.invoice.state == "closed" {
        return closed_page(&state, &loaded);
    }
    let submission = match validate(&state, &loaded, action, &form) {
        Ok(submission) => submission,
        Err(message) => {
            state.metrics.link(action.page(), "invalid_form");
            let error = state.pages.message(&loaded.locale, message);
            let mut context = form_context(&state, &loaded, action, Some(error));
            context.insert(
                "title",
                &state.pages.message(&loaded.locale, "title_invalid"),
            );
            return page_response(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                &loaded.locale,
                action.page(),
                &context,
            );
        }
    };
    match record_submission(&state, &loaded, action, &token, &submission).await {
        Ok(recorded) => {
            let message = if recorded {
                let text = state
                    .pages
                    .message(&loaded.locale, &format!("done_{}", action.page()));
                match submission.promised_on {
                    Some(day) => text.replace("{date}", &date(day, &loaded.locale)),
                    None => text,
                }
            } else {
                state.pages.message(&loaded.locale, "already_recorded")
            };
            let mut context = context(&state, &loaded, "title_done");
            context.insert("message", &message);
            page_response(&state, StatusCode::OK, &loaded.locale, "done", &context)
        }
        Err(SubmitError::Refused) => closed_page(&state, &loaded),
        Err(SubmitError::Storage(error)) => server_error(&error),
    }
}

enum SubmitError {
    Refused,
    Storage(StorageError),
}

impl From<StorageError> for SubmitError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

/// Records the action, its effect on dunning, its task and its event in one transaction;
/// `false` when this link already recorded this action.
async fn record_submission(
    state: &AppState,
    loaded: &Loaded,
    action: Action,
    token: &str,
    submission: &Submission,
) -> Result<bool, SubmitError> {
    let now = state.now();
    let action_id = Uuid::new_v5(
        &ACTION_NAMESPACE,
        format!("{token}\u{1f}{}", action.code()).as_bytes(),
    );
    let invoice_ids = vec![loaded.claims.i.clone()];
    let mut transaction = state
        .pool
        .begin()
        .await
        .map_err(StorageError::Unreachable)?;
    let inserted = tracking::record_action(
        &mut transaction,
        &NewAction {
            action_id,
            tenant: loaded.claims.t.clone(),
            customer_id: loaded.claims.c.clone(),
            invoice_id: loaded.claims.i.clone(),
            reminder_id: Some(loaded.claims.r),
            action: action.code(),
            reference: submission.reference.clone(),
            reason: submission.reason.clone(),
            promised_on: submission.promised_on,
            message: submission.message.clone(),
            acted_at: now,
        },
    )
    .await?;
    if !inserted {
        return Ok(false);
    }
    let (_, _, grace_days) =
        promise_window(state, &loaded.claims.t, customer_today(state, loaded, now));
    let fact = match action {
        Action::AlreadyPaid => Some(InvoiceFact::PaymentClaimed {
            reference: submission.reference.clone(),
        }),
        Action::Dispute => Some(InvoiceFact::Disputed {
            dispute_id: format!("customer-{action_id}"),
            resolved: false,
            amount: None,
        }),
        Action::Promise => submission
            .promised_on
            .map(|promised_on| InvoiceFact::PromisedToPay {
                promised_on,
                grace_days,
            }),
        Action::PaymentPlan => None,
    };
    let mut records: Vec<Option<OutboxRecord>> = Vec::new();
    if let Some(fact) = fact {
        let cause_id = action_id.to_string();
        let origin = FactSource {
            source: SOURCE,
            cause_id: &cause_id,
            cause_type: "relance.dunning.customer_action",
        };
        let changes = apply_invoice_fact(
            &mut transaction,
            &loaded.claims.t,
            &invoice_ids,
            &fact,
            &origin,
            now,
            &state.settings.kafka.topics.events,
        )
        .await
        .map_err(|error| match error {
            ApplyError::Storage(error) => SubmitError::Storage(error),
            ApplyError::Refused(_) | ApplyError::Event(_) => SubmitError::Refused,
        })?;
        records.extend(changes.into_iter().map(Some));
        // Commands already queued for this invoice must not go out now that dunning waits.
        let keys = [relance_domain::scoped(&loaded.claims.t, &loaded.claims.i)];
        let cancelled = outbox::cancel_pending_for_invoices(&mut transaction, &keys).await?;
        scheduling::cancel_reminders(&mut transaction, &keys, &cancelled, now).await?;
    }
    let summary = match action {
        Action::AlreadyPaid => format!(
            "The customer says invoice {} is already paid{}. Check the payment; dunning waits until the claim is settled.",
            loaded.invoice.number.clone().unwrap_or_default(),
            submission.reference.as_ref().map(|reference| format!(" (reference: {reference})")).unwrap_or_default()
        ),
        Action::Dispute => format!(
            "The customer disputes invoice {} ({}). Dunning of this invoice is paused until the dispute is resolved.",
            loaded.invoice.number.clone().unwrap_or_default(),
            submission.reason.clone().unwrap_or_default()
        ),
        Action::Promise => String::new(),
        Action::PaymentPlan => format!(
            "The customer asks for a payment plan for invoice {}.",
            loaded.invoice.number.clone().unwrap_or_default()
        ),
    };
    let task_kind = match action {
        Action::AlreadyPaid => Some((TaskKind::VerifyPaymentClaim, TaskPriority::Normal)),
        Action::Dispute => Some((TaskKind::ReviewDispute, TaskPriority::High)),
        Action::PaymentPlan => Some((TaskKind::PaymentPlanRequest, TaskPriority::Normal)),
        Action::Promise => None,
    };
    if let Some((kind, priority)) = task_kind {
        records.push(task(
            state,
            loaded,
            action_id,
            kind,
            priority,
            summary,
            submission.message.as_deref(),
        ));
    }
    let event = CustomerActionV1 {
        action_id,
        customer_id: Id::parse(&loaded.claims.c).map_err(|_| SubmitError::Refused)?,
        invoice_id: Id::parse(&loaded.claims.i).map_err(|_| SubmitError::Refused)?,
        reminder_id: Some(loaded.claims.r),
        action: match action {
            Action::AlreadyPaid => CustomerActionKind::AlreadyPaid,
            Action::Dispute => CustomerActionKind::Dispute,
            Action::Promise => CustomerActionKind::PromiseToPay,
            Action::PaymentPlan => CustomerActionKind::PaymentPlanRequest,
        },
        acted_at: now,
        reference: submission
            .reference
            .as_ref()
            .and_then(|reference| Reference::parse(reference.clone()).ok()),
        reason: submission
            .reason
            .as_ref()
            .and_then(|reason| Code::parse(reason.clone()).ok()),
        promised_on: submission.promised_on,
        message: submission
            .message
            .as_ref()
            .and_then(|message| Text::parse(message.clone()).ok()),
    };
    records.push(events::record(
        &state.settings.kafka.topics.events,
        &loaded.claims.t,
        &loaded.claims.c,
        action_id,
        now,
        event,
    ));
    let records: Vec<OutboxRecord> = records.into_iter().flatten().collect();
    outbox::enqueue(&mut transaction, &records).await?;
    transaction
        .commit()
        .await
        .map_err(|source| StorageError::Query {
            context: "committing a customer action",
            source,
        })?;
    state.relay.notify_one();
    if let Some(delivery) = &loaded.delivery {
        state.metrics.action(delivery, action.code());
    }
    tracing::info!(invoice = %loaded.claims.i, action = action.code(), "Customer action recorded.");
    Ok(true)
}

pub async fn already_paid(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    submit(state, token, Action::AlreadyPaid, form).await
}

pub async fn dispute(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    submit(state, token, Action::Dispute, form).await
}

pub async fn promise(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    submit(state, token, Action::Promise, form).await
}

pub async fn payment_plan(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    submit(state, token, Action::PaymentPlan, form).await
}

/// `POST /l/renew/{token}`: for an expired (or valid) genuine link, sends the reminder again
/// with fresh links — a copy of its command with a new idempotency key, through the sender and
/// its guard — at most once a day per reminder.
pub async fn renew(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let now = state.now();
    // Only an action page's link that has expired asks for a fresh reminder: a link that still
    // works needs none, and the pixel's or a tracked link's token (in every message's HTML) must
    // not re-send the reminder to whoever holds the message.
    let claims = match state.signer.verify(&token, now.timestamp()) {
        Err(relance_links::LinkError::Expired(claims)) if claims.a.is_action_page() => *claims,
        _ => {
            state.metrics.link("renew", "not_found");
            return not_found();
        }
    };
    let invoice = match tracking::invoice_page(&state.pool, &claims.t, &claims.i).await {
        Ok(Some(invoice)) if invoice.tenant == claims.t && invoice.customer_id == claims.c => {
            invoice
        }
        Ok(_) => return not_found(),
        Err(error) => return server_error(&error),
    };
    let delivery = match tracking::delivery_of_reminder(&state.pool, claims.r).await {
        Ok(delivery) => delivery.filter(|delivery| delivery.tenant == claims.t),
        Err(error) => return server_error(&error),
    };
    let locale = state.pages.locale(invoice.locale.as_deref());
    let loaded = Loaded {
        claims,
        invoice,
        locale,
        delivery,
    };
    if loaded.invoice.state == "closed" {
        return closed_page(&state, &loaded);
    }
    let Some(delivery) = loaded.delivery.clone() else {
        let mut context = context(&state, &loaded, "title_unavailable");
        context.insert(
            "message",
            &state.pages.message(&loaded.locale, "renew_refused"),
        );
        return page_response(
            &state,
            StatusCode::OK,
            &loaded.locale,
            "unavailable",
            &context,
        );
    };
    state.metrics.link("renew", "ok");
    let today = customer_today(&state, &loaded, now);
    let action_id = Uuid::new_v5(
        &ACTION_NAMESPACE,
        format!("{}:renew:{today}", loaded.claims.r).as_bytes(),
    );
    let result: Result<bool, StorageError> = async {
        let mut transaction = state
            .pool
            .begin()
            .await
            .map_err(StorageError::Unreachable)?;
        let inserted = tracking::record_action(
            &mut transaction,
            &NewAction {
                action_id,
                tenant: loaded.claims.t.clone(),
                customer_id: loaded.claims.c.clone(),
                invoice_id: loaded.claims.i.clone(),
                reminder_id: Some(loaded.claims.r),
                action: "link_renewal",
                reference: None,
                reason: None,
                promised_on: None,
                message: None,
                acted_at: now,
            },
        )
        .await?;
        if inserted {
            if let Some(record) = renewed_command(&state, &delivery, today, now) {
                outbox::enqueue(&mut transaction, &[record]).await?;
            }
        }
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing a link renewal",
                source,
            })?;
        Ok(inserted)
    }
    .await;
    match result {
        Ok(inserted) => {
            if inserted {
                state.relay.notify_one();
                state.metrics.action(&delivery, "link_renewal");
            }
            let mut context = context(&state, &loaded, "title_done");
            context.insert(
                "message",
                &state.pages.message(&loaded.locale, "done_renewed"),
            );
            page_response(&state, StatusCode::OK, &loaded.locale, "done", &context)
        }
        Err(error) => server_error(&error),
    }
}

/// A copy of the delivery's command with a new reminder id and idempotency key, and a deadline
/// at least a week away, cancelled if the invoice is paid before it goes out.
fn renewed_command(
    state: &AppState,
    delivery: &TrackedDelivery,
    today: NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<OutboxRecord> {
    let mut command = delivery.command.clone();
    let key = command["data"]["idempotency_key"].as_str()?.to_string();
    let reminder_id = Uuid::new_v5(
        &ACTION_NAMESPACE,
        format!("{}:renewal:{today}", delivery.reminder_id).as_bytes(),
    );
    let week = today.checked_add_days(Days::new(7))?;
    let deadline = command["data"]["response_deadline"]
        .as_str()
        .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .map_or(week, |deadline| deadline.max(week));
    command["id"] = serde_json::json!(Uuid::new_v5(
        &ACTION_NAMESPACE,
        format!("{reminder_id}:command").as_bytes()
    )
    .to_string());
    command["source"] = serde_json::json!(SOURCE);
    command["time"] = serde_json::json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    command["data"]["reminder_id"] = serde_json::json!(reminder_id.to_string());
    command["data"]["idempotency_key"] = serde_json::json!(format!("{key}:renewal:{today}")
        .chars()
        .take(256)
        .collect::<String>());
    command["data"]["response_deadline"] = serde_json::json!(deadline.to_string());
    command["data"]["scheduled_for"] =
        serde_json::json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let payload = serde_json::to_vec(&command).ok()?;
    Some(OutboxRecord {
        topic: state.settings.kafka.topics.reminders.clone(),
        key: Some(delivery.customer_id.as_bytes().to_vec()),
        headers: relance_events::cloudevent_headers(
            "relance.reminder.send",
            command["id"].as_str().unwrap_or_default(),
            &delivery.tenant,
        ),
        payload,
        cancel_keys: delivery
            .invoice_ids
            .iter()
            .map(|invoice_id| outbox::cancel_key(&delivery.tenant, invoice_id))
            .collect(),
        reminder_id: Some(reminder_id),
        dead_letter: None,
    })
}
