//! Metrics of the Kafka consumer runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use relance_contracts::kafka_binding::{key_check, KeyCheck};

/// How often a consumer logs that records' keys put ordering at risk, per topic and kind: a
/// producer that never sets keys would otherwise write a line per record.
const KEY_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of a service's consumer runner.
#[derive(Clone)]
pub struct KafkaMetrics {
    records_consumed: IntCounterVec,
    batches_committed: IntCounter,
    batch_retries: IntCounter,
    commit_failures: IntCounter,
    consumer_lag: IntGaugeVec,
    assigned_partitions: IntGaugeVec,
    records_isolated: IntCounterVec,
    keys_at_risk: IntCounterVec,
    key_warned: Arc<Mutex<HashMap<(String, &'static str), Instant>>>,
}

impl KafkaMetrics {
    /// Registers the consumer metrics in `registry`.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let records_consumed = IntCounterVec::new(
            Opts::new(
                "relance_kafka_records_consumed_total",
                "Records read from Kafka, before processing.",
            ),
            &["topic"],
        )?;
        let batches_committed = IntCounter::new(
            "relance_kafka_batches_committed_total",
            "Batches processed whose offsets were committed.",
        )?;
        let batch_retries = IntCounter::new(
            "relance_kafka_batch_retries_total",
            "Times a batch failed for a transient reason (database or broker unavailable) and was retried.",
        )?;
        let commit_failures = IntCounter::new(
            "relance_kafka_commit_failures_total",
            "Offset commits that failed; the records are redelivered and deduplicated.",
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "relance_kafka_consumer_lag",
                "Records between the group's committed offset and the end of the partition, from librdkafka statistics (kafka.statistics_interval_ms).",
            ),
            &["topic", "partition"],
        )?;
        let assigned_partitions = IntGaugeVec::new(
            Opts::new(
                "relance_kafka_assigned_partitions",
                "Partitions of each topic assigned to this consumer by its group, updated on every rebalance: 0 until it has joined.",
            ),
            &["topic"],
        )?;
        let records_isolated = IntCounterVec::new(
            Opts::new(
                "relance_kafka_records_isolated_total",
                "Records refused for their content (a value the database cannot store) and set aside to the dead-letter topic, by topic; the rest of their batch was applied.",
            ),
            &["topic"],
        )?;
        let keys_at_risk = IntCounterVec::new(
            Opts::new(
                "relance_kafka_records_key_at_risk_total",
                "Records applied whose Kafka key is missing or is not their event's partitionkey (the customer id), by topic and kind (no_key, no_partitionkey, differs): one customer's events may then be on several partitions, out of order.",
            ),
            &["topic", "kind"],
        )?;
        registry.register(Box::new(keys_at_risk.clone()))?;
        registry.register(Box::new(records_isolated.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(assigned_partitions.clone()))?;
        registry.register(Box::new(records_consumed.clone()))?;
        registry.register(Box::new(batches_committed.clone()))?;
        registry.register(Box::new(batch_retries.clone()))?;
        registry.register(Box::new(commit_failures.clone()))?;
        Ok(Self {
            records_consumed,
            batches_committed,
            batch_retries,
            commit_failures,
            consumer_lag,
            assigned_partitions,
            records_isolated,
            keys_at_risk,
            key_warned: Arc::default(),
        })
    }

    pub(crate) fn consumer_lag_gauge(&self) -> IntGaugeVec {
        self.consumer_lag.clone()
    }

    pub(crate) fn assigned_partitions_gauge(&self) -> IntGaugeVec {
        self.assigned_partitions.clone()
    }

    pub(crate) fn record_consumed(&self, topic: &str) {
        self.records_consumed.with_label_values(&[topic]).inc();
    }

    pub(crate) fn record_isolated(&self, topic: &str) {
        self.records_isolated.with_label_values(&[topic]).inc();
    }

    /// Checks a record's key against its event's `partitionkey` (the Kafka binding maps one to
    /// the other); when ordering per customer is at risk, counts it and logs it (at most once a
    /// minute per topic and kind). The record is applied all the same.
    pub fn check_key(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        partitionkey: Option<&str>,
        event_id: &str,
    ) -> KeyCheck {
        let check = key_check(key, partitionkey);
        if check == KeyCheck::Matches {
            return check;
        }
        self.keys_at_risk
            .with_label_values(&[topic, check.code()])
            .inc();
        let now = Instant::now();
        let due = self.key_warned.lock().is_ok_and(|mut warned| {
            match warned.get_mut(&(topic.to_string(), check.code())) {
                Some(last) if now.duration_since(*last) < KEY_WARNING_INTERVAL => false,
                Some(last) => {
                    *last = now;
                    true
                }
                None => {
                    warned.insert((topic.to_string(), check.code()), now);
                    true
                }
            }
        });
        if due {
            tracing::warn!(topic, partition, offset, event_id, kind = check.code(), "A record's key is not its event's partitionkey: one customer's events may be on several partitions and applied out of order. Key records by customer id (relance_kafka_records_key_at_risk_total counts them; this is logged once a minute).");
        }
        check
    }

    pub(crate) fn record_batch_committed(&self) {
        self.batches_committed.inc();
    }

    pub(crate) fn record_batch_retry(
        &self,
        attempt: u32,
        error: &(dyn std::error::Error + 'static),
    ) {
        self.batch_retries.inc();
        tracing::warn!(attempt, error = %error, error.cause_chain = ?relance_telemetry::ErrorChain(error), "Batch failed for a transient reason; retrying.");
    }

    pub(crate) fn record_commit_failure(&self, error: &rdkafka::error::KafkaError) {
        self.commit_failures.inc();
        tracing::warn!(error = %error, "Committing offsets failed; the batch will be redelivered and deduplicated.");
    }
}
