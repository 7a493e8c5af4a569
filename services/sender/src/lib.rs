//! The sender: consumes reminder commands, re-checks the invoices and the contact just before
//! sending, renders the tenant's templates and delivers exactly once through the tenant's
//! provider (Postmark, SendGrid, Twilio SMS, or files), recording and publishing every outcome.
//!
//! Two loops share the database: intake ([`intake`]) records each command as a delivery and
//! commits the offset; the dispatcher ([`dispatch`]) takes due deliveries to an outcome. See
//! docs/providers.md and docs/templates.md.

pub mod audit;
pub mod compose;
pub mod dispatch;
pub mod intake;
pub mod metrics;
pub mod providers;
pub mod settle;

use std::sync::Arc;
use std::time::Duration;

use relance_kafka::{ConsumerRunner, DeadLetterWriter, KafkaMetrics, RunnerOptions};
use relance_links::LinkSigner;
use relance_runtime::{BoxError, OutboxMetrics, Service, ServiceContext, ServiceName};
use relance_templates::TemplateStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::intake::IntakeHandler;
use crate::metrics::SenderMetrics;
use crate::providers::Providers;

/// Why the sender cannot start, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("sender.templates_dir = {dir:?}: {reason}")]
    Templates { dir: String, reason: String },
    #[error("links.signing_keys_file = {file:?}: {reason}")]
    LinkKeys { file: String, reason: String },
    #[error("{0}")]
    Provider(String),
}

/// The sender service.
pub struct Sender;

impl Service for Sender {
    const NAME: ServiceName = ServiceName::Sender;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        let settings = context.settings.clone();
        let sender = &settings.sender;
        let templates =
            TemplateStore::load(std::path::Path::new(&sender.templates_dir)).map_err(|error| {
                StartError::Templates {
                    dir: sender.templates_dir.clone(),
                    reason: error.to_string(),
                }
            })?;
        for finding in relance_templates::lint(&templates) {
            tracing::warn!(finding = %finding, "A template breaks a writing rule (relancectl templates lint).");
        }
        let keys_file = &settings.links.signing_keys_file;
        let signer = std::fs::read_to_string(keys_file)
            .map_err(|error| error.to_string())
            .and_then(|text| LinkSigner::from_text(&text).map_err(|error| error.to_string()))
            .map_err(|reason| StartError::LinkKeys {
                file: keys_file.clone(),
                reason,
            })?;
        let providers =
            Providers::build(sender).map_err(|error| StartError::Provider(error.to_string()))?;
        let registry = context.metrics.registry();
        let metrics = SenderMetrics::register(registry, sender.tenant_label)?;
        for provider in sender.providers.keys() {
            metrics.provider_configured(provider);
        }
        let relay = context.outbox_relay(OutboxMetrics::register(registry)?);
        let dead_letters = DeadLetterWriter::new(
            context.producer.clone(),
            settings.kafka.topics.dlq.clone(),
            Self::NAME.as_str(),
        )
        .with_max_bytes(
            usize::try_from(settings.kafka.dead_letter_max_bytes).unwrap_or(usize::MAX),
        );
        let wake = Arc::new(Notify::new());
        let dispatcher = Dispatcher {
            pool: context.pool.clone(),
            clock: context.clock.clone(),
            settings: sender.clone(),
            links: settings.links.clone(),
            signer: Arc::new(signer),
            templates: Arc::new(templates),
            providers: Arc::new(providers),
            topics: settings.kafka.topics.clone(),
            dead_letters: dead_letters.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            relay: relay.waker(),
        };
        let kafka_metrics = KafkaMetrics::register(registry)?;
        let handler = IntakeHandler {
            pool: context.pool.clone(),
            clock: context.clock.clone(),
            dead_letters,
            metrics: metrics.clone(),
            dispatcher: wake,
            relay: relay.waker(),
            kafka_metrics: kafka_metrics.clone(),
        };
        let topic = settings.kafka.topics.reminders.clone();
        let runner = ConsumerRunner::new(
            &settings.kafka,
            Self::NAME.as_str(),
            &sender.group_id,
            &[topic.as_str()],
            RunnerOptions {
                batch_max_messages: sender.batch_max_messages,
                batch_max_wait: Duration::from_millis(sender.batch_max_wait_ms),
                retry_initial: Duration::from_millis(sender.retry_initial_ms),
                retry_max: Duration::from_millis(sender.retry_max_ms),
            },
            kafka_metrics,
        )?;
        tracing::info!(topic = %topic, group = %sender.group_id, "Consuming reminder commands.");
        // The dispatcher and the relay stop after the consumer: what intake committed is
        // dispatched in the next life, and what outcomes queued in the outbox goes out now.
        let dispatcher_shutdown = context.shutdown.clone();
        let dispatcher_task = tokio::spawn(dispatcher.run(dispatcher_shutdown));
        let relay_shutdown = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));
        let consumed = runner.run(handler, context.shutdown.clone()).await;
        let _ = dispatcher_task.await;
        relay_shutdown.cancel();
        let _ = relay_task.await;
        consumed?;
        Ok(())
    }
}
