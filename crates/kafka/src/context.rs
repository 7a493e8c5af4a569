//! librdkafka callbacks routed to `tracing`, with rebalances logged.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

/// The client context of every relance Kafka client.
#[derive(Clone, Default)]
pub struct RelanceContext {
    /// Where a consumer reports its lag per partition, from librdkafka's statistics.
    consumer_lag: Option<prometheus::IntGaugeVec>,
}

impl RelanceContext {
    /// A context that reports consumer lag to `gauge` (labels `topic`, `partition`).
    pub fn with_consumer_lag(gauge: prometheus::IntGaugeVec) -> Self {
        Self {
            consumer_lag: Some(gauge),
        }
    }
}

impl ClientContext for RelanceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, reason, "Kafka client error.");
    }

    fn stats(&self, statistics: Statistics) {
        let Some(gauge) = &self.consumer_lag else {
            return;
        };
        for (topic_name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; a negative lag
                // means not known yet (no committed offset or no high watermark).
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    gauge
                        .with_label_values(&[topic_name.as_str(), &partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|element| format!("{}[{}]", element.topic(), element.partition()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConsumerContext for RelanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // Nothing needs committing here: the runner commits synchronously after every
            // batch, before it polls again, and rebalances only happen inside a poll.
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "Partitions revoked.");
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "Partitions assigned.");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "Rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(error = %error, partitions = %describe(offsets), "Offset commit failed.");
        }
    }
}
