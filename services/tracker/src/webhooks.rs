//! Provider webhooks: authenticated (Postmark: basic auth on the URL; SendGrid: ECDSA
//! signature), idempotent by event key, acted on per event. A hard bounce, a complaint or an
//! unsubscription suppresses the address, so the sender's guard skips the next email reminder,
//! and a task asks a person to reach the customer another way.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use relance_contracts::commands::{CreateTaskV1, TaskKind, TaskPriority};
use relance_contracts::dunning::{InteractionSource, LinkKind};
use relance_contracts::{Code, Id, Recipient, Text};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::tracking::{self, TrackedDelivery};
use relance_storage::{deliveries, StorageError};
use relance_tracking::webhooks::{
    basic_auth_matches, parse_postmark, parse_sendgrid, EventKind, ProviderEvent,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::events;
use crate::interactions::{self, Seen};
use crate::public::AppState;

const TASK_NAMESPACE: Uuid = Uuid::from_u128(0x0b6e_94d2_5f1a_4c88_a3e7_19c0_d24b_7f61);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `POST /webhooks/postmark`.
pub async fn postmark(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((username, password)) = &state.postmark_auth else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !basic_auth_matches(
        header(&headers, "authorization"),
        username,
        password.expose_secret(),
    ) {
        state.metrics.webhook("postmark", "any", "unauthorized");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let event = match parse_postmark(&body, header(&headers, "x-pm-webhook-trace-id")) {
        Ok(event) => event,
        Err(error) => {
            state.metrics.webhook("postmark", "any", "malformed");
            tracing::warn!(error = %error, "A Postmark webhook cannot be read.");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    match handle(&state, &event).await {
        Ok(()) => StatusCode::OK.into_response(),
        // 5xx: Postmark retries; 4xx would drop the event.
        Err(error) => {
            tracing::warn!(error = %error, "A Postmark webhook could not be handled; Postmark will retry.");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `POST /webhooks/sendgrid`.
pub async fn sendgrid(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = &state.sendgrid else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let signature = header(&headers, "x-twilio-email-event-webhook-signature").unwrap_or_default();
    let timestamp = header(&headers, "x-twilio-email-event-webhook-timestamp").unwrap_or_default();
    if let Err(error) = verifier.verify_fresh(
        signature,
        timestamp,
        &body,
        state.now(),
        i64::from(state.settings.tracker.sendgrid_webhook_tolerance_seconds),
    ) {
        state.metrics.webhook("sendgrid", "any", "unauthorized");
        tracing::warn!(error = %error, "A SendGrid webhook is refused.");
        return StatusCode::FORBIDDEN.into_response();
    }
    let events = match parse_sendgrid(&body) {
        Ok(events) => events,
        Err(error) => {
            state.metrics.webhook("sendgrid", "any", "malformed");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    for event in events {
        match event {
            Ok(event) => {
                if let Err(error) = handle(&state, &event).await {
                    tracing::warn!(error = %error, "A SendGrid webhook could not be handled; SendGrid will retry.");
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
            Err(error) => {
                state.metrics.webhook("sendgrid", "any", "malformed");
                tracing::warn!(error = %error, "A SendGrid event cannot be read; the others are handled.");
            }
        }
    }
    StatusCode::OK.into_response()
}

fn undeliverable_task(
    state: &AppState,
    delivery: &TrackedDelivery,
    event: &ProviderEvent,
    why: &str,
) -> Option<OutboxRecord> {
    let now = state.now();
    let task_id = Uuid::new_v5(
        &TASK_NAMESPACE,
        format!("{}:{}", event.provider, event.key).as_bytes(),
    );
    let recipient: Option<Recipient> =
        serde_json::from_value(delivery.command["data"]["recipient"].clone()).ok();
    let data = CreateTaskV1 {
        task_id,
        idempotency_key: format!("{}:undeliverable:{}", delivery.tenant, task_id),
        customer_id: Id::parse(&delivery.customer_id).ok()?,
        kind: TaskKind::ManualReview,
        priority: TaskPriority::Normal,
        // The customer's date, in the zone the reminder was planned in.
        due_on: relance_domain::calendar::local_date(
            delivery.command["data"]["timezone"]
                .as_str()
                .and_then(relance_domain::calendar::zone)
                .unwrap_or(relance_domain::calendar::UNKNOWN_ZONE),
            now,
        ),
        invoice_ids: delivery.invoice_ids.iter().filter_map(|id| Id::parse(id).ok()).collect(),
        amount_due: None,
        contact: recipient,
        reason: Text::parse(format!(
            "Email reminders to {} can no longer be delivered ({why}, reported by {}). Reach the customer another way and update the contact.",
            event.recipient.clone().unwrap_or_default(),
            event.provider
        ))
        .ok(),
        segment: Code::parse(&delivery.segment).ok(),
        step: serde_json::from_value(delivery.command["data"]["step"].clone()).ok(),
        customer_note: None,
        approval: None,
    };
    events::record(
        &state.settings.kafka.topics.tasks,
        &delivery.tenant,
        &delivery.customer_id,
        task_id,
        now,
        data,
    )
}

/// Handles one event, once.
async fn handle(state: &AppState, event: &ProviderEvent) -> Result<(), StorageError> {
    let kind = event.kind.label().to_string();
    let delivery = tracking::delivery_by_send_or_message_id(
        &state.pool,
        event.send_id,
        event.provider_message_id.as_deref(),
    )
    .await?;
    let Some(delivery) = delivery else {
        state
            .metrics
            .webhook(event.provider, &kind, "unknown_message");
        return Ok(());
    };
    let now = state.now();
    let at = event.occurred_at.unwrap_or(now);
    let mut transaction = state
        .pool
        .begin()
        .await
        .map_err(StorageError::Unreachable)?;
    if !tracking::first_time_webhook(&mut transaction, event.provider, &event.key, now).await? {
        state.metrics.webhook(event.provider, &kind, "duplicate");
        return Ok(());
    }
    let suppress = |reason: &'static str| (reason, event.recipient.clone());
    let (suppression, task_reason) = match &event.kind {
        EventKind::Bounced { hard: true } => (Some(suppress("hard_bounce")), Some("a hard bounce")),
        EventKind::Complained => (Some(suppress("complaint")), Some("a spam complaint")),
        EventKind::Unsubscribed => (Some(suppress("opt_out")), Some("an unsubscription")),
        _ => (None, None),
    };
    match &event.kind {
        EventKind::Delivered => {
            tracking::mark_milestone(&mut transaction, delivery.delivery_id, "delivered", at)
                .await?;
        }
        EventKind::Bounced { .. } => {
            tracking::mark_milestone(&mut transaction, delivery.delivery_id, "bounced", at).await?;
        }
        EventKind::Complained => {
            tracking::mark_milestone(&mut transaction, delivery.delivery_id, "complained", at)
                .await?;
        }
        _ => {}
    }
    let mut records = Vec::new();
    if let (Some((reason, Some(address))), Some(why)) = (suppression, task_reason) {
        deliveries::suppress(
            &mut transaction,
            &delivery.tenant,
            "email",
            &address,
            reason,
            event.provider,
            Some(why),
        )
        .await?;
        records.extend(undeliverable_task(state, &delivery, event, why));
    }
    outbox::enqueue(&mut transaction, &records).await?;
    transaction
        .commit()
        .await
        .map_err(|source| StorageError::Query {
            context: "committing a webhook event",
            source,
        })?;
    if !records.is_empty() {
        state.relay.notify_one();
    }
    match &event.kind {
        EventKind::Delivered => state.metrics.delivered(&delivery, event.provider),
        EventKind::Bounced { hard } => state.metrics.bounced(&delivery, event.provider, *hard),
        EventKind::Complained => state.metrics.complained(&delivery, event.provider),
        EventKind::Opened | EventKind::Clicked { .. } => {
            let link = match &event.kind {
                EventKind::Clicked { url } => Some(link_of(state, url.as_deref())),
                _ => None,
            };
            let seen = Seen {
                delivery: &delivery,
                invoice_id: delivery.invoice_ids.first().map(String::as_str),
                link,
                source: InteractionSource::ProviderWebhook,
                provider: Some(event.provider),
                user_agent: event.user_agent.as_deref(),
                head_request: false,
                provider_machine_flag: event.machine_flag,
                at,
            };
            interactions::record(state, &seen).await?;
        }
        EventKind::Unsubscribed | EventKind::Other(_) => {}
    }
    state.metrics.webhook(event.provider, &kind, "handled");
    Ok(())
}

/// Which of our links a provider-tracked click was, from its URL.
fn link_of(state: &AppState, url: Option<&str>) -> LinkKind {
    let base = state.links.public_base_url.trim_end_matches('/');
    let Some(path) = url
        .and_then(|url| url.strip_prefix(base))
        .and_then(|rest| rest.strip_prefix("/l/"))
    else {
        return LinkKind::Other;
    };
    match path.split('/').next() {
        Some("pay") => LinkKind::Pay,
        Some("already-paid") => LinkKind::AlreadyPaid,
        Some("dispute") => LinkKind::Dispute,
        Some("promise") => LinkKind::PromiseToPay,
        Some("payment-plan") => LinkKind::PaymentPlan,
        _ => LinkKind::Other,
    }
}
