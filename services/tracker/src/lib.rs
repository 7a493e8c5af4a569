//! The tracker: what happens after a reminder is sent. Public (behind the ingress, at
//! `links.public_base_url`): the tracking pixel, click-tracked links, the customer action pages
//! (pay, already paid, dispute, promise to pay, payment plan) and the provider webhooks.
//! Internal: /metrics and the health endpoints on the ops port. In the background: attribution
//! of payments to the reminders that preceded them. See docs/tracking.md.

pub mod actions;
pub mod attribution;
pub mod events;
pub mod interactions;
pub mod metrics;
pub mod pages;
pub mod public;
pub mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relance_config::AttributionModel;
use relance_kafka::{ConsumerRunner, KafkaMetrics, RunnerOptions};
use relance_links::LinkSigner;
use relance_policy::PolicySet;
use relance_runtime::{BoxError, OutboxMetrics, Service, ServiceContext, ServiceName};
use relance_tracking::attribution::Model;
use relance_tracking::classify::Thresholds;
use relance_tracking::webhooks::SendGridVerifier;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::attribution::AttributionHandler;
use crate::metrics::TrackerMetrics;
use crate::pages::Pages;
use crate::public::Public;

/// Why the tracker cannot start, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value:?}: {reason}")]
pub struct StartError {
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

/// The tracker service.
pub struct Tracker;

impl Service for Tracker {
    const NAME: ServiceName = ServiceName::Tracker;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        let settings = context.settings.clone();
        let tracker = &settings.tracker;
        let pages = Pages::load(&tracker.pages_dir)?;
        let policies = PolicySet::load(&tracker.policies_dir).map_err(|errors| StartError {
            key: "tracker.policies_dir",
            value: tracker.policies_dir.clone(),
            reason: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let keys_file = &settings.links.signing_keys_file;
        let signer = std::fs::read_to_string(keys_file)
            .map_err(|error| error.to_string())
            .and_then(|text| LinkSigner::from_text(&text).map_err(|error| error.to_string()))
            .map_err(|reason| StartError {
                key: "links.signing_keys_file",
                value: keys_file.clone(),
                reason,
            })?;
        let sendgrid = match tracker.sendgrid_webhook_public_key.trim() {
            "" => None,
            key => Some(
                SendGridVerifier::from_base64_der(key).map_err(|error| StartError {
                    key: "tracker.sendgrid_webhook_public_key",
                    value: "[the configured key]".into(),
                    reason: error.to_string(),
                })?,
            ),
        };
        let postmark_auth = (!tracker.postmark_webhook_username.trim().is_empty()
            && !tracker.postmark_webhook_password.expose_secret().is_empty())
        .then(|| {
            (
                tracker.postmark_webhook_username.clone(),
                tracker.postmark_webhook_password.clone(),
            )
        });
        let model = match tracker.attribution_model {
            AttributionModel::LastTouch => Model::LastTouch,
            AttributionModel::FirstTouch => Model::FirstTouch,
            AttributionModel::Linear => Model::Linear,
        };
        let registry = context.metrics.registry();
        let metrics = TrackerMetrics::register(registry, tracker.tenant_label)?;
        let relay = context.outbox_relay(OutboxMetrics::register(registry)?);
        let state = Arc::new(Public {
            pool: context.pool.clone(),
            clock: context.clock.clone(),
            links: settings.links.clone(),
            signer,
            pages,
            policies,
            metrics: metrics.clone(),
            relay: relay.waker(),
            thresholds: Thresholds {
                open_too_soon_seconds: i64::from(tracker.open_too_soon_seconds),
                click_too_soon_seconds: i64::from(tracker.click_too_soon_seconds),
                burst_seconds: i64::from(tracker.burst_seconds),
            },
            postmark_auth,
            sendgrid,
            clients: Mutex::new(HashMap::new()),
            settings: settings.clone(),
        });
        let listener = tokio::net::TcpListener::bind(&tracker.public_listen_address).await?;
        let address = listener.local_addr()?;
        let app = public::router(state);
        let public_shutdown = context.shutdown.clone();
        let public_task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { public_shutdown.cancelled().await })
            .await
        });
        tracing::info!(address = %address, "Serving the public pages, links and webhooks.");
        let handler = AttributionHandler {
            pool: context.pool.clone(),
            clock: context.clock.clone(),
            model,
            window_days: tracker.attribution_window_days,
            events_topic: settings.kafka.topics.events.clone(),
            metrics,
            relay: relay.waker(),
        };
        let runner = ConsumerRunner::new(
            &settings.kafka,
            Self::NAME.as_str(),
            &tracker.group_id,
            &[settings.kafka.topics.payments.as_str()],
            RunnerOptions {
                batch_max_messages: tracker.batch_max_messages,
                batch_max_wait: Duration::from_millis(tracker.batch_max_wait_ms),
                retry_initial: Duration::from_millis(tracker.retry_initial_ms),
                retry_max: Duration::from_millis(tracker.retry_max_ms),
            },
            KafkaMetrics::register(registry)?,
        )?;
        let relay_shutdown = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));
        let consumed = runner.run(handler, context.shutdown.clone()).await;
        let _ = public_task.await;
        relay_shutdown.cancel();
        let _ = relay_task.await;
        consumed?;
        Ok(())
    }
}
