//! Metrics of the Kafka consumer runner.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Counters of a service's consumer runner.
#[derive(Clone)]
pub struct KafkaMetrics {
    records_consumed: IntCounterVec,
    batches_committed: IntCounter,
    batch_retries: IntCounter,
    commit_failures: IntCounter,
    consumer_lag: IntGaugeVec,
    records_isolated: IntCounterVec,
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
        let records_isolated = IntCounterVec::new(
            Opts::new(
                "relance_kafka_records_isolated_total",
                "Records refused for their content (a value the database cannot store) and set aside to the dead-letter topic, by topic; the rest of their batch was applied.",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(records_isolated.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
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
            records_isolated,
        })
    }

    pub(crate) fn consumer_lag_gauge(&self) -> IntGaugeVec {
        self.consumer_lag.clone()
    }

    pub(crate) fn record_consumed(&self, topic: &str) {
        self.records_consumed.with_label_values(&[topic]).inc();
    }

    pub(crate) fn record_isolated(&self, topic: &str) {
        self.records_isolated.with_label_values(&[topic]).inc();
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
