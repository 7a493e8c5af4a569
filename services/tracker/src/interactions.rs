//! Opens and clicks: the tracking pixel, click-tracked links, the GET of every action link
//! (pay, already paid, dispute, promise, payment plan), and the same from provider webhooks.
//! Each is classified human or machine, stored, counted and published; none changes dunning
//! (only the POST of an action page does).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use relance_contracts::dunning::{
    InteractionSource, LinkKind, ReminderClickedV1, ReminderOpenedV1,
};
use relance_contracts::{Code, Id, InteractionClassification};
use relance_links::LinkAction;
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::tracking::{self, NewInteraction, Reclassified, TrackedDelivery};
use relance_storage::StorageError;
use relance_tracking::classify::{
    classify_click, classify_open, Classification, MachineReason, Signal,
};

use crate::events;
use crate::public::{not_found, AppState, Checked};

/// A transparent 1×1 GIF.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn pixel_response() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, must-revalidate, private"),
            ),
        ],
        PIXEL.as_slice(),
    )
        .into_response()
}

/// The request's user agent, cut to what the interactions table keeps.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|text| text.chars().take(500).collect())
}

/// What link kind a path segment is.
pub fn link_kind(action: LinkAction) -> LinkKind {
    match action {
        LinkAction::Pay => LinkKind::Pay,
        LinkAction::AlreadyPaid => LinkKind::AlreadyPaid,
        LinkAction::Dispute => LinkKind::Dispute,
        LinkAction::PromiseToPay => LinkKind::PromiseToPay,
        LinkAction::PaymentPlan => LinkKind::PaymentPlan,
        LinkAction::Open | LinkAction::Click => LinkKind::Other,
    }
}

pub fn link_label(kind: LinkKind) -> &'static str {
    match kind {
        LinkKind::Pay => "pay",
        LinkKind::AlreadyPaid => "already_paid",
        LinkKind::Dispute => "dispute",
        LinkKind::PromiseToPay => "promise_to_pay",
        LinkKind::PaymentPlan => "payment_plan",
        LinkKind::Other => "other",
    }
}

/// One open or click to record.
pub struct Seen<'a> {
    pub delivery: &'a TrackedDelivery,
    pub invoice_id: Option<&'a str>,
    /// `None` for an open.
    pub link: Option<LinkKind>,
    pub source: InteractionSource,
    pub provider: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub head_request: bool,
    pub provider_machine_flag: Option<bool>,
    pub at: DateTime<Utc>,
}

/// Classifies, stores, counts and publishes an open or a click.
///
/// A click is classified with the other links of its message clicked within
/// `tracker.burst_seconds` either side, and when there are any, the human clicks among them are
/// taken back as `burst` in the same transaction: the click that starts a scanner's burst looks
/// like a person's until the next one comes. The clicks of one reminder are recorded one at a
/// time (an advisory lock) so that links fetched in parallel see each other.
///
/// # Errors
/// [`StorageError`] when the database fails.
pub async fn record(state: &AppState, seen: &Seen<'_>) -> Result<Classification, StorageError> {
    let delivery = seen.delivery;
    let seconds_since_sent = delivery.sent_at.map(|sent| (seen.at - sent).num_seconds());
    let link_label_text = seen.link.map(link_label);
    let window = chrono::Duration::seconds(i64::from(state.settings.tracker.burst_seconds));
    let (since, until) = (seen.at - window, seen.at + window);
    let mut transaction = state
        .pool
        .begin()
        .await
        .map_err(StorageError::Unreachable)?;
    let other_links_nearby = match link_label_text {
        Some(link) => {
            tracking::lock_reminder_clicks(&mut transaction, delivery.reminder_id).await?;
            tracking::other_clicks_between(
                &mut transaction,
                delivery.reminder_id,
                link,
                since,
                until,
            )
            .await?
        }
        None => 0,
    };
    let signal = Signal {
        user_agent: seen.user_agent,
        head_request: seen.head_request,
        provider_machine_flag: seen.provider_machine_flag,
        seconds_since_sent,
        other_links_nearby: usize::try_from(other_links_nearby).unwrap_or(0),
    };
    let classification = match seen.link {
        None => classify_open(&signal, &state.thresholds),
        Some(_) => classify_click(&signal, &state.thresholds),
    };
    let source = match seen.source {
        InteractionSource::TrackingPixel => "tracking_pixel",
        InteractionSource::TrackedLink => "tracked_link",
        InteractionSource::ProviderWebhook => "provider_webhook",
    };
    let interaction = NewInteraction {
        tenant: delivery.tenant.clone(),
        reminder_id: delivery.reminder_id,
        delivery_id: Some(delivery.delivery_id),
        customer_id: delivery.customer_id.clone(),
        invoice_id: seen.invoice_id.map(str::to_string),
        kind: if seen.link.is_some() { "click" } else { "open" },
        link: link_label_text.map(str::to_string),
        human: classification == Classification::Human,
        machine_reason: classification.reason().map(str::to_string),
        source,
        provider: seen.provider.map(str::to_string),
        user_agent: seen.user_agent.map(str::to_string),
        occurred_at: seen.at,
    };
    let wire_classification = match classification {
        Classification::Human => InteractionClassification::Human,
        Classification::Machine(_) => InteractionClassification::Machine,
    };
    let machine_reason = classification
        .reason()
        .and_then(|reason| Code::parse(reason).ok());
    let provider = seen
        .provider
        .and_then(|provider| Code::parse(provider).ok());
    let Ok(customer_id) = Id::parse(&delivery.customer_id) else {
        // Nothing about it could be published; the transaction rolls back as it drops.
        return Ok(classification);
    };
    let record: Option<OutboxRecord> = match seen.link {
        None => events::record(
            &state.settings.kafka.topics.events,
            &delivery.tenant,
            &delivery.customer_id,
            uuid::Uuid::new_v4(),
            seen.at,
            ReminderOpenedV1 {
                reminder_id: delivery.reminder_id,
                customer_id,
                opened_at: seen.at,
                classification: wire_classification,
                machine_reason,
                source: seen.source,
                provider,
            },
        ),
        Some(link) => events::record(
            &state.settings.kafka.topics.events,
            &delivery.tenant,
            &delivery.customer_id,
            uuid::Uuid::new_v4(),
            seen.at,
            ReminderClickedV1 {
                reminder_id: delivery.reminder_id,
                customer_id,
                invoice_id: seen.invoice_id.and_then(|id| Id::parse(id).ok()),
                clicked_at: seen.at,
                link,
                classification: wire_classification,
                machine_reason,
                source: seen.source,
                provider,
            },
        ),
    };
    let first_human = tracking::record_interaction(&mut transaction, &interaction).await?;
    // Clicks on other links this close: those that passed for a person's were the start of
    // this burst. (Events already published about them keep the verdict they had then.)
    let taken_back = match link_label_text {
        Some(link) if other_links_nearby > 0 => {
            tracking::reclassify_burst(
                &mut transaction,
                delivery.delivery_id,
                delivery.reminder_id,
                link,
                MachineReason::Burst.code(),
                since,
                until,
            )
            .await?
        }
        _ => Reclassified::default(),
    };
    outbox::enqueue(&mut transaction, &record.into_iter().collect::<Vec<_>>()).await?;
    transaction
        .commit()
        .await
        .map_err(|source| StorageError::Query {
            context: "committing an interaction",
            source,
        })?;
    state.relay.notify_one();
    match link_label_text {
        None => state
            .metrics
            .open(delivery, classification.label(), first_human),
        Some(link) => {
            state
                .metrics
                .click(delivery, link, classification.label(), first_human);
            for taken in &taken_back.links {
                state
                    .metrics
                    .click_taken_back(delivery, taken.as_deref().unwrap_or("other"));
            }
            if taken_back.click_withdrawn {
                state.metrics.click_withdrawn(delivery);
            }
        }
    }
    Ok(classification)
}

/// `GET /l/o/{token}`: the tracking pixel. Always the image for a genuine token; a forged one
/// gets the plain 404.
pub async fn pixel(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let claims = match state.check(&token, LinkAction::Open) {
        Some(Checked::Valid(claims)) => claims,
        Some(Checked::Expired(_)) => {
            state.metrics.link("pixel", "expired");
            return pixel_response();
        }
        None => {
            state.metrics.link("pixel", "not_found");
            return not_found();
        }
    };
    state.metrics.link("pixel", "ok");
    match tracking::delivery_of_reminder(&state.pool, claims.r).await {
        Ok(Some(delivery)) if delivery.tenant == claims.t => {
            let agent = user_agent(&headers);
            let seen = Seen {
                delivery: &delivery,
                invoice_id: Some(&claims.i),
                link: None,
                source: InteractionSource::TrackingPixel,
                provider: None,
                user_agent: agent.as_deref(),
                head_request: method == Method::HEAD,
                provider_machine_flag: None,
                at: state.now(),
            };
            if let Err(error) = record(&state, &seen).await {
                tracing::warn!(error = %error, "An open could not be recorded.");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "An open could not be recorded."),
    }
    pixel_response()
}

/// `GET /l/c/{token}`: a click-tracked link; redirects only to the target inside the signed
/// token, so the tracker is never an open redirect.
pub async fn click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let claims = match state.check(&token, LinkAction::Click) {
        Some(Checked::Valid(claims)) => claims,
        Some(Checked::Expired(claims)) => {
            state.metrics.link("click", "expired");
            return crate::actions::expired_page(&state, &claims, &token).await;
        }
        None => {
            state.metrics.link("click", "not_found");
            return not_found();
        }
    };
    let Some(target) = claims
        .u
        .clone()
        .filter(|target| target.starts_with("https://") || target.starts_with("http://"))
    else {
        state.metrics.link("click", "not_found");
        return not_found();
    };
    state.metrics.link("click", "ok");
    if let Ok(Some(delivery)) = tracking::delivery_of_reminder(&state.pool, claims.r).await {
        if delivery.tenant == claims.t {
            // The invoice's own payment page counts as a pay click.
            let pays = delivery.command["data"]["invoices"]
                .as_array()
                .is_some_and(|invoices| {
                    invoices
                        .iter()
                        .any(|invoice| invoice["payment_url"].as_str() == Some(target.as_str()))
                });
            let agent = user_agent(&headers);
            let seen = Seen {
                delivery: &delivery,
                invoice_id: Some(&claims.i),
                link: Some(if pays { LinkKind::Pay } else { LinkKind::Other }),
                source: InteractionSource::TrackedLink,
                provider: None,
                user_agent: agent.as_deref(),
                head_request: method == Method::HEAD,
                provider_machine_flag: None,
                at: state.now(),
            };
            if let Err(error) = record(&state, &seen).await {
                tracing::warn!(error = %error, "A click could not be recorded.");
            }
        }
    }
    Redirect::to(&target).into_response()
}
