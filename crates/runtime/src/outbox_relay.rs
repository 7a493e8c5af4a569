//! The outbox relay: publishes what transactions wrote to the outbox, in order, and marks it.
//!
//! One relay publishes at a time across all replicas (an advisory lock), so records of one key
//! reach Kafka in the order they were written. A record is marked published only after the
//! broker acknowledged it; a crash in between publishes it again, which consumers absorb
//! because every event has a stable id. Records that fail stay pending and are retried.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use relance_config::OutboxSettings;
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_storage::outbox;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Metrics of the relay.
#[derive(Clone)]
pub struct OutboxMetrics {
    published: IntCounterVec,
    failures: IntCounterVec,
    pending: IntGauge,
}

impl OutboxMetrics {
    /// Registers the relay's metrics.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let published = IntCounterVec::new(
            Opts::new(
                "relance_outbox_published_total",
                "Outbox records published to Kafka.",
            ),
            &["topic"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "relance_outbox_publish_failures_total",
                "Outbox records whose publication failed; they stay pending and are retried.",
            ),
            &["topic"],
        )?;
        let pending = IntGauge::new(
            "relance_outbox_pending",
            "Outbox records waiting to be published.",
        )?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(Self {
            published,
            failures,
            pending,
        })
    }
}

/// Publishes the outbox of one database.
pub struct OutboxRelay {
    pool: PgPool,
    producer: EventProducer,
    settings: OutboxSettings,
    metrics: OutboxMetrics,
    wake: Arc<Notify>,
}

/// How often the relay deletes old published records and refreshes the pending gauge.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

impl OutboxRelay {
    /// A relay over `pool`'s outbox.
    pub fn new(
        pool: PgPool,
        producer: EventProducer,
        settings: OutboxSettings,
        metrics: OutboxMetrics,
    ) -> Self {
        Self {
            pool,
            producer,
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notify it after a commit that wrote to the outbox, to publish without waiting for the
    /// next poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Publishes until `shutdown`, then makes one last round so that what is already committed
    /// goes out before the process exits (what does not is published after the restart).
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut next_housekeeping = Instant::now();
        loop {
            if Instant::now() >= next_housekeeping {
                self.housekeeping().await;
                next_housekeeping = Instant::now() + HOUSEKEEPING_INTERVAL;
            }
            self.publish_available().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        self.publish_available().await;
    }

    /// Publishes rounds until the outbox is empty or a round fails.
    async fn publish_available(&self) {
        loop {
            match self.publish_round().await {
                Ok(published) if published >= self.settings.batch_size as usize => continue,
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(error = %error, "Publishing the outbox failed; retrying later.");
                    return;
                }
            }
        }
    }

    /// One round: claim, publish, mark. Returns how many records were published.
    async fn publish_round(&self) -> Result<usize, relance_storage::StorageError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(relance_storage::StorageError::Unreachable)?;
        let pending =
            outbox::claim_pending(&mut transaction, i64::from(self.settings.batch_size)).await?;
        if pending.is_empty() {
            transaction
                .commit()
                .await
                .map_err(relance_storage::StorageError::Unreachable)?;
            return Ok(0);
        }
        let records: Vec<OutgoingRecord> = pending
            .iter()
            .map(|pending| OutgoingRecord {
                topic: pending.record.topic.clone(),
                key: pending.record.key.clone(),
                payload: pending.record.payload.clone(),
                headers: pending.record.headers.clone(),
            })
            .collect();
        let results = self.producer.send_all(&records).await;
        let mut published = Vec::with_capacity(pending.len());
        let mut failed = Vec::new();
        for (pending, result) in pending.iter().zip(results) {
            match result {
                Ok(_) => {
                    self.metrics
                        .published
                        .with_label_values(&[&pending.record.topic])
                        .inc();
                    published.push(pending.id);
                }
                Err(error) => {
                    self.metrics
                        .failures
                        .with_label_values(&[&pending.record.topic])
                        .inc();
                    failed.push((pending.id, error.to_string()));
                }
            }
        }
        outbox::mark_published(&mut transaction, &published).await?;
        transaction
            .commit()
            .await
            .map_err(relance_storage::StorageError::Unreachable)?;
        for (id, error) in &failed {
            tracing::warn!(outbox_id = id, error = %error, "Publishing an outbox record failed; it stays pending.");
            outbox::record_failure(&self.pool, *id, error).await?;
        }
        if failed.is_empty() {
            Ok(published.len())
        } else {
            // Stop this burst; the next poll retries.
            Ok(0)
        }
    }

    async fn housekeeping(&self) {
        match outbox::purge_published(&self.pool, i64::from(self.settings.retention_hours)).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "Purged published outbox records."),
            Err(error) => tracing::warn!(error = %error, "Purging the outbox failed."),
        }
        match outbox::pending_count(&self.pool).await {
            Ok(count) => self.metrics.pending.set(count),
            Err(error) => {
                tracing::debug!(error = %error, "Counting pending outbox records failed.")
            }
        }
    }
}
