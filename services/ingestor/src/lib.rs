//! The ingestor: consumes invoice, payment and customer events from the billing topics and
//! keeps the dunning state of every invoice and the profile of every customer in PostgreSQL.
//! Every state change is published on the events topic through the transactional outbox;
//! records it cannot apply go to the dead-letter topic with their reason.

pub mod convert;
pub mod handler;
pub mod metrics;

use std::time::Duration;

use relance_kafka::{ConsumerRunner, DeadLetterWriter, KafkaMetrics, RunnerOptions};
use relance_runtime::{BoxError, OutboxMetrics, Service, ServiceContext, ServiceName};

use crate::handler::IngestHandler;

/// The `source` of the events the ingestor publishes.
pub const SOURCE: &str = "urn:relance:ingestor";
use crate::metrics::IngestMetrics;

/// The ingestor service.
pub struct Ingestor;

impl Service for Ingestor {
    const NAME: ServiceName = ServiceName::Ingestor;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        let settings = &context.settings;
        let registry = context.metrics.registry();
        let relay = context.outbox_relay(OutboxMetrics::register(registry)?);
        let kafka_metrics = KafkaMetrics::register(registry)?;
        let handler = IngestHandler::new(
            context.pool.clone(),
            context.clock.clone(),
            DeadLetterWriter::new(
                context.producer.clone(),
                settings.kafka.topics.dlq.clone(),
                Self::NAME.as_str(),
            )
            .with_max_bytes(
                usize::try_from(settings.kafka.dead_letter_max_bytes).unwrap_or(usize::MAX),
            ),
            settings.kafka.topics.events.clone(),
            IngestMetrics::register(registry)?,
            kafka_metrics.clone(),
            relay.waker(),
        )
        .with_payment_hosts(settings.sender.payment_hosts());
        let topics = settings.kafka.topics.billing();
        let runner = ConsumerRunner::new(
            &settings.kafka,
            Self::NAME.as_str(),
            &settings.ingestor.group_id,
            &topics,
            RunnerOptions {
                batch_max_messages: settings.ingestor.batch_max_messages,
                batch_max_wait: Duration::from_millis(settings.ingestor.batch_max_wait_ms),
                retry_initial: Duration::from_millis(settings.ingestor.retry_initial_ms),
                retry_max: Duration::from_millis(settings.ingestor.retry_max_ms),
            },
            kafka_metrics,
        )?;
        tracing::info!(topics = ?topics, group = %settings.ingestor.group_id, concurrent_batches = settings.ingestor.concurrent_batches, "Consuming billing events.");
        // The relay stops after the consumer, so that what the last batch committed goes out.
        let relay_shutdown = tokio_util::sync::CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));
        let lanes = usize::try_from(settings.ingestor.concurrent_batches)
            .unwrap_or(1)
            .max(1);
        let handlers = vec![handler; lanes];
        let consumed = runner.run_lanes(handlers, context.shutdown.clone()).await;
        relay_shutdown.cancel();
        let _ = relay_task.await;
        consumed?;
        Ok(())
    }
}
