//! The outbox relay: publishes what this service's transactions wrote to the outbox, in order,
//! and deletes it (or, with `outbox.retention_hours` above 0, marks it published and purges it
//! that much later).
//!
//! - Each service relays its own records (those its connections wrote), and one relay of a
//!   service publishes at a time across its replicas (an advisory lock of its own): one
//!   service's stuck publisher never holds another's, and a payment cancelling a queued
//!   command never waits for a publication in flight (no row is locked while sending).
//! - A record is deleted or marked published only after the broker acknowledged it; a crash
//!   in between publishes it again, which consumers absorb because every event has a stable
//!   id.
//! - A record the broker will never accept (too large, invalid) is marked failed for good,
//!   counted and logged, never retried; others stay pending and are retried.
//! - A topic the broker says is missing or not writable (not created yet, an ACL not granted)
//!   is held: its records stay pending, unclaimed, and are tried again after a backoff (30 s,
//!   doubling to 5 min), while the other topics publish. Ops fix it without touching the
//!   records; readiness is not failed for it (the publish-failure alert is what tells).
//! - A producer that keeps failing in a way a new producer cures (its state lost by a broker
//!   restart, nothing acknowledged) is recreated; readiness reports publishing that has been
//!   failing too long ([`PublishHealth`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use relance_config::OutboxSettings;
use relance_kafka::{EventProducer, OutgoingRecord, ProduceError};
use relance_storage::outbox::{self, LastHold};
use relance_storage::StorageError;
use relance_telemetry::{CheckFuture, ReadinessCheck};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Metrics of the relay.
#[derive(Clone)]
pub struct OutboxMetrics {
    published: IntCounterVec,
    failures: IntCounterVec,
    failed: IntCounterVec,
    recreated: IntCounter,
    pending: IntGauge,
}

impl OutboxMetrics {
    /// Registers the relay's metrics.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let counter = IntCounterVec::new(Opts::new(name, help), &["topic"])?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let published = counter(
            "relance_outbox_published_total",
            "Outbox records published to Kafka.",
        )?;
        let failures = counter(
            "relance_outbox_publish_failures_total",
            "Outbox records whose publication failed for now; they stay pending and are retried.",
        )?;
        let failed = counter(
            "relance_outbox_failed_total",
            "Outbox records the broker refused for good (too large, invalid): never retried, kept in the outbox with the error. Alert on any.",
        )?;
        let recreated = IntCounter::new(
            "relance_kafka_producer_recreated_total",
            "Times the producer was replaced because it kept failing in a way a new one cures (its state lost after a broker restart, nothing acknowledged).",
        )?;
        registry.register(Box::new(recreated.clone()))?;
        let pending = IntGauge::new(
            "relance_outbox_pending",
            "This service's outbox records waiting to be published.",
        )?;
        registry.register(Box::new(pending.clone()))?;
        Ok(Self {
            published,
            failures,
            failed,
            recreated,
            pending,
        })
    }

    /// Creates the series of `topics` at zero: an alert on the rate of publication failures
    /// cannot see the first one otherwise.
    pub fn at_zero_for(self, topics: &[&str]) -> Self {
        for topic in topics {
            for counter in [&self.published, &self.failures, &self.failed] {
                counter.with_label_values(&[topic]).inc_by(0);
            }
        }
        self
    }
}

/// Whether this service manages to publish, as its relay reports it; readiness reads it.
#[derive(Clone, Default)]
pub struct PublishHealth(Arc<Mutex<PublishState>>);

#[derive(Default)]
struct PublishState {
    failing_since: Option<Instant>,
    last_error: String,
}

impl PublishHealth {
    fn succeeded(&self) {
        if let Ok(mut state) = self.0.lock() {
            state.failing_since = None;
        }
    }

    fn failed(&self, error: &str) {
        if let Ok(mut state) = self.0.lock() {
            state.failing_since.get_or_insert_with(Instant::now);
            state.last_error = error.to_string();
        }
    }

    /// How long publishing has been failing, and the last error, if it is failing.
    pub fn failing(&self) -> Option<(Duration, String)> {
        let state = self.0.lock().ok()?;
        state
            .failing_since
            .map(|since| (since.elapsed(), state.last_error.clone()))
    }
}

/// The readiness check of publishing: not ready once publishing has failed for `limit`.
pub(crate) struct PublishingCheck {
    pub health: PublishHealth,
    pub limit: Duration,
}

impl ReadinessCheck for PublishingCheck {
    fn name(&self) -> &'static str {
        "publishing"
    }

    fn check(&self) -> CheckFuture {
        let failing = self.health.failing();
        let limit = self.limit;
        Box::pin(async move {
            match failing {
                Some((for_how_long, error)) if for_how_long >= limit => Err(format!(
                    "cannot publish for {} s: {error}",
                    for_how_long.as_secs()
                )),
                _ => Ok(()),
            }
        })
    }
}

/// How long a topic the broker says is missing or not writable is first left alone, and the
/// longest it is: each failed try doubles it. Trying costs a round up to the producer's
/// message timeout (librdkafka waits for the topic to appear), which the backoff keeps rare.
const TOPIC_HOLD_FIRST: Duration = Duration::from_secs(30);
const TOPIC_HOLD_LONGEST: Duration = Duration::from_secs(300);

/// How long a topic the broker says is missing or not writable is held now, after its `last`
/// hold (none once a record of it was published): the first hold, or twice the last one, up to
/// the longest, when it fails again soon after that one ended (it is still missing).
pub(crate) fn next_topic_hold(last: Option<LastHold>) -> Duration {
    match last {
        Some(last) if last.ended_seconds_ago <= 2.0 * last.seconds => {
            // A hold row written by hand may say anything: never less than the first hold.
            Duration::try_from_secs_f64(last.seconds * 2.0)
                .unwrap_or(TOPIC_HOLD_LONGEST)
                .clamp(TOPIC_HOLD_FIRST, TOPIC_HOLD_LONGEST)
        }
        _ => TOPIC_HOLD_FIRST,
    }
}

/// Publishes one service's outbox.
pub struct OutboxRelay {
    pool: PgPool,
    /// The application name of the service's connections: whose records these are.
    producer_name: String,
    producer: EventProducer,
    settings: OutboxSettings,
    metrics: OutboxMetrics,
    health: PublishHealth,
    wake: Arc<Notify>,
    failed_rounds: AtomicU32,
    counted_at: Mutex<Option<Instant>>,
}

/// How often the relay deletes old published records.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// How often, at most, the relay counts what is pending.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Rounds a producer may fail in a way a new producer cures before it is replaced.
const ROUNDS_BEFORE_RECREATING: u32 = 2;

impl OutboxRelay {
    /// A relay over the records `producer_name` (a connection's application name) wrote to
    /// `pool`'s outbox.
    pub fn new(
        pool: PgPool,
        producer_name: &str,
        producer: EventProducer,
        settings: OutboxSettings,
        metrics: OutboxMetrics,
    ) -> Self {
        Self {
            pool,
            producer_name: producer_name.to_string(),
            producer,
            settings,
            metrics,
            health: PublishHealth::default(),
            wake: Arc::new(Notify::new()),
            failed_rounds: AtomicU32::new(0),
            counted_at: Mutex::new(None),
        }
    }

    /// Reports to `health` (the service's readiness reads it).
    pub fn with_health(mut self, health: PublishHealth) -> Self {
        self.health = health;
        self
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
            let result = self.publish_round().await;
            self.count_pending(false).await;
            match result {
                Ok(published) if published >= self.settings.batch_size as usize => continue,
                Ok(_) => return,
                Err(error) => {
                    self.health.failed(&error.to_string());
                    tracing::warn!(error = ?relance_telemetry::ErrorChain(&error), "Publishing the outbox failed; retrying later.");
                    return;
                }
            }
        }
    }

    /// One round: claim, publish, mark. Returns how many records were published (0 when a
    /// record failed, to stop the burst).
    async fn publish_round(&self) -> Result<usize, StorageError> {
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let claim = outbox::claim_pending(
            &mut transaction,
            &self.producer_name,
            i64::from(self.settings.batch_size),
        )
        .await?;
        for topic in &claim.released {
            tracing::info!(
                topic,
                "A topic's hold ended: its records are tried again, oldest first."
            );
        }
        let pending = claim.records;
        if pending.is_empty() {
            transaction
                .commit()
                .await
                .map_err(StorageError::Unreachable)?;
            self.health.succeeded();
            return Ok(0);
        }
        // The records are moved, not copied, into what the producer sends: a round is up to
        // `batch_size` payloads.
        let (sources, records): (Vec<(i64, String)>, Vec<OutgoingRecord>) = pending
            .into_iter()
            .map(|pending| {
                let record = pending.record;
                (
                    (pending.id, record.topic.clone()),
                    OutgoingRecord {
                        topic: record.topic,
                        key: record.key,
                        payload: record.payload,
                        headers: record.headers,
                    },
                )
            })
            .unzip();
        let results = self.producer.send_all(&records).await;
        drop(records);
        let mut published = Vec::with_capacity(sources.len());
        let mut refused: Vec<(i64, &str, ProduceError)> = Vec::new();
        let mut failed: Vec<(i64, &str, ProduceError)> = Vec::new();
        let mut unavailable: std::collections::BTreeMap<&str, (Vec<i64>, ProduceError)> =
            std::collections::BTreeMap::new();
        for ((id, topic), result) in sources.iter().zip(results) {
            let topic = topic.as_str();
            match result {
                Ok(_) => {
                    self.metrics.published.with_label_values(&[topic]).inc();
                    published.push(*id);
                }
                Err(error) if error.is_topic_unavailable() => {
                    self.metrics.failures.with_label_values(&[topic]).inc();
                    unavailable
                        .entry(topic)
                        .or_insert_with(|| (Vec::new(), error))
                        .0
                        .push(*id);
                }
                Err(error) if !error.is_retryable() => refused.push((*id, topic, error)),
                Err(error) => failed.push((*id, topic, error)),
            }
        }
        if self.settings.retention_hours == 0 {
            outbox::delete_published(&mut transaction, &published).await?;
        } else {
            outbox::mark_published(&mut transaction, &published).await?;
        }
        self.end_holds(&mut transaction, &claim.known_holds, &sources, &published)
            .await?;
        self.hold_unavailable(&mut transaction, &unavailable)
            .await?;
        transaction
            .commit()
            .await
            .map_err(StorageError::Unreachable)?;
        for (id, topic, error) in &refused {
            self.metrics.failed.with_label_values(&[topic]).inc();
            tracing::error!(outbox_id = id, topic, error = %error, "The broker refuses an outbox record for good; it is set aside and will never be published (relance_outbox_failed_total).");
            outbox::record_failure(&self.pool, *id, &error.to_string(), true).await?;
        }
        for (id, topic, error) in &failed {
            self.metrics.failures.with_label_values(&[topic]).inc();
            tracing::warn!(outbox_id = id, topic, error = %error, "Publishing an outbox record failed; it stays pending.");
            outbox::record_failure(&self.pool, *id, &error.to_string(), false).await?;
        }
        if failed.is_empty() {
            self.health.succeeded();
            self.failed_rounds.store(0, Ordering::Relaxed);
            return Ok(if refused.is_empty() {
                published.len()
            } else {
                0
            });
        }
        self.health.failed(&failed[0].2.to_string());
        let curable = failed
            .iter()
            .all(|(_, _, error)| error.suggests_a_new_producer());
        let rounds = self.failed_rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let fatal = self.producer.fatal_error();
        if fatal.is_some() || (curable && rounds >= ROUNDS_BEFORE_RECREATING) {
            self.recreate_producer(fatal.as_deref().unwrap_or("nothing acknowledged"));
        }
        // Stop this burst; the next poll retries.
        Ok(0)
    }

    /// Ends the holds of the topics a record was just published to: failing again later
    /// starts afresh. In the round's transaction, under the relay lock.
    async fn end_holds(
        &self,
        transaction: &mut PgConnection,
        known_holds: &[String],
        sources: &[(i64, String)],
        published: &[i64],
    ) -> Result<(), StorageError> {
        if known_holds.is_empty() || published.is_empty() {
            return Ok(());
        }
        let published: std::collections::HashSet<&i64> = published.iter().collect();
        let accepting: std::collections::BTreeSet<&str> = sources
            .iter()
            .filter(|(id, topic)| published.contains(id) && known_holds.contains(topic))
            .map(|(_, topic)| topic.as_str())
            .collect();
        if accepting.is_empty() {
            return Ok(());
        }
        let accepting: Vec<&str> = accepting.into_iter().collect();
        for topic in outbox::topics_accept(transaction, &self.producer_name, &accepting).await? {
            tracing::info!(topic, "A held topic accepts records again.");
        }
        Ok(())
    }

    /// Holds the topics the broker said are missing or not writable: every pending record of
    /// theirs waits, out of the claims, until the hold ends. In the round's transaction, under
    /// the relay lock, so that no replica's relay claims them in between and every replica
    /// reads the same hold and backoff.
    async fn hold_unavailable(
        &self,
        transaction: &mut PgConnection,
        unavailable: &std::collections::BTreeMap<&str, (Vec<i64>, ProduceError)>,
    ) -> Result<(), StorageError> {
        for (topic, (ids, error)) in unavailable {
            let last = outbox::last_topic_hold(transaction, &self.producer_name, topic).await?;
            let hold = next_topic_hold(last);
            let held = outbox::hold_topic(
                transaction,
                &self.producer_name,
                topic,
                hold.as_secs_f64(),
                ids,
                &error.to_string(),
            )
            .await?;
            tracing::warn!(topic, error = %error, records = held, retry_in_s = hold.as_secs(), "The broker says this topic is missing or not writable: its records wait, pending, while the other topics publish; create the topic or grant the ACL.");
        }
        Ok(())
    }

    fn recreate_producer(&self, why: &str) {
        match self.producer.recreate() {
            Ok(()) => {
                self.metrics.recreated.inc();
                self.failed_rounds.store(0, Ordering::Relaxed);
                tracing::warn!(why, "The producer kept failing; replaced by a new one.");
            }
            Err(error) => {
                tracing::error!(error = %error, "The producer could not be recreated.")
            }
        }
    }

    /// Sets the pending gauge, at most once a second unless `now`.
    async fn count_pending(&self, now: bool) {
        {
            let Ok(mut counted) = self.counted_at.lock() else {
                return;
            };
            if !now && counted.is_some_and(|at| at.elapsed() < GAUGE_INTERVAL) {
                return;
            }
            *counted = Some(Instant::now());
        }
        match outbox::pending_count(&self.pool, &self.producer_name).await {
            Ok(count) => self.metrics.pending.set(count),
            Err(error) => {
                tracing::debug!(error = %error, "Counting pending outbox records failed.")
            }
        }
    }

    async fn housekeeping(&self) {
        match outbox::purge_published(&self.pool, i64::from(self.settings.retention_hours)).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "Purged published outbox records."),
            Err(error) => tracing::warn!(error = %error, "Purging the outbox failed."),
        }
        self.count_pending(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_failing_again_is_held_twice_as_long_up_to_the_longest_and_afresh_once_published() {
        let after = |hold: Duration, ended_seconds_ago: f64| {
            next_topic_hold(Some(LastHold {
                seconds: hold.as_secs_f64(),
                ended_seconds_ago,
            }))
        };
        // No hold row: never held, or a record of it was published since.
        assert_eq!(next_topic_hold(None), TOPIC_HOLD_FIRST);
        // Tried again when the hold ends, still missing: twice as long, up to the longest.
        let mut hold = TOPIC_HOLD_FIRST;
        let mut holds = Vec::new();
        for _ in 0..6 {
            hold = after(hold, 0.2);
            holds.push(hold.as_secs());
        }
        assert_eq!(holds, [60, 120, 240, 300, 300, 300]);
        // Claimed again a while after the end (a quiet outbox): still the same incident.
        assert_eq!(after(TOPIC_HOLD_FIRST, 59.0), TOPIC_HOLD_FIRST * 2);
        // Failing long after the last hold ended: the topic came back meanwhile.
        assert_eq!(after(TOPIC_HOLD_LONGEST, 601.0), TOPIC_HOLD_FIRST);
        // A hold row edited by hand never makes a hold shorter than the first or endless.
        assert_eq!(after(Duration::from_millis(1), 0.0), TOPIC_HOLD_FIRST);
        assert_eq!(
            next_topic_hold(Some(LastHold {
                seconds: f64::NAN,
                ended_seconds_ago: 0.0
            })),
            TOPIC_HOLD_FIRST
        );
        assert_eq!(
            next_topic_hold(Some(LastHold {
                seconds: f64::MAX,
                ended_seconds_ago: 0.0
            })),
            TOPIC_HOLD_LONGEST
        );
    }
}
