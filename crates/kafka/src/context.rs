//! librdkafka callbacks routed to `tracing`, with rebalances logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Where a consumer counts the partitions assigned to it, by topic.
    assigned_partitions: Option<prometheus::IntGaugeVec>,
    /// The partitions revoked so far, for a runner holding records read before.
    revocations: Arc<Revocations>,
}

/// Revocations numbered in order: a record read while the count was `n` was read before every
/// revocation numbered above `n`.
#[derive(Default)]
struct Revocations {
    count: AtomicU64,
    revoked: Mutex<Vec<(u64, String, i32)>>,
}

impl RelanceContext {
    /// A consumer's context: it reports its lag to `consumer_lag` (labels `topic`,
    /// `partition`) and the partitions assigned to it to `assigned_partitions` (label `topic`).
    pub fn for_consumer(
        consumer_lag: prometheus::IntGaugeVec,
        assigned_partitions: prometheus::IntGaugeVec,
    ) -> Self {
        Self {
            consumer_lag: Some(consumer_lag),
            assigned_partitions: Some(assigned_partitions),
            revocations: Arc::default(),
        }
    }

    /// Counts `partitions` in or out of the assigned-partitions gauge. Both rebalance protocols
    /// are covered: an eager revocation lists every partition held, an incremental one only
    /// those that leave, and an assignment only those that arrive after its revocation.
    fn record_assignment(&self, partitions: &TopicPartitionList, assigned: bool) {
        let Some(gauge) = &self.assigned_partitions else {
            return;
        };
        for element in partitions.elements() {
            let gauge = gauge.with_label_values(&[element.topic()]);
            if assigned {
                gauge.inc();
            } else {
                gauge.dec();
            }
        }
    }

    /// How many revocations this consumer has seen: the tag of a record read now.
    pub fn revocation_count(&self) -> u64 {
        self.revocations.count.load(Ordering::SeqCst)
    }

    /// Whether `topic`'s `partition` was revoked after a record tagged `read_at` was read (its
    /// fetch position went back to the committed offset, or to another member).
    pub fn revoked_since(&self, read_at: u64, topic: &str, partition: i32) -> bool {
        if self.revocation_count() <= read_at {
            return false;
        }
        let revoked = self
            .revocations
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked
            .iter()
            .any(|(number, revoked_topic, revoked_partition)| {
                *number > read_at && revoked_topic == topic && *revoked_partition == partition
            })
    }

    /// Forgets revocations no record still held was read before.
    pub fn forget_revocations_up_to(&self, oldest_read_at: u64) {
        self.revocations
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(number, _, _)| *number > oldest_read_at);
    }

    fn record_revocation(&self, partitions: &TopicPartitionList) {
        let number = self.revocations.count.load(Ordering::SeqCst) + 1;
        self.revocations
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(
                partitions
                    .elements()
                    .iter()
                    .map(|element| (number, element.topic().to_string(), element.partition())),
            );
        // Counted after the partitions are listed: a runner that sees the new count finds them.
        self.revocations.count.store(number, Ordering::SeqCst);
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
                self.record_revocation(partitions);
                self.record_assignment(partitions, false);
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "Partitions assigned.");
                self.record_assignment(partitions, true);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(list: &[(&str, i32)]) -> TopicPartitionList {
        let mut partitions = TopicPartitionList::new();
        for (topic, partition) in list {
            partitions.add_partition(topic, *partition);
        }
        partitions
    }

    #[test]
    fn assigned_partitions_are_counted_by_topic_in_and_out() {
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("lag", "lag"),
            &["topic", "partition"],
        )
        .expect("gauge");
        let assigned =
            prometheus::IntGaugeVec::new(prometheus::Opts::new("assigned", "assigned"), &["topic"])
                .expect("gauge");
        let context = RelanceContext::for_consumer(lag, assigned.clone());
        let count = |topic: &str| assigned.with_label_values(&[topic]).get();

        context.record_assignment(
            &partitions(&[("invoices", 0), ("invoices", 1), ("customers", 0)]),
            true,
        );
        assert_eq!((count("invoices"), count("customers")), (2, 1));
        // An incremental rebalance takes one partition away and later gives another.
        context.record_assignment(&partitions(&[("invoices", 1)]), false);
        context.record_assignment(&partitions(&[("invoices", 2)]), true);
        assert_eq!((count("invoices"), count("customers")), (2, 1));
        // An eager one revokes everything held.
        context.record_assignment(
            &partitions(&[("invoices", 0), ("invoices", 2), ("customers", 0)]),
            false,
        );
        assert_eq!((count("invoices"), count("customers")), (0, 0));
    }

    #[test]
    fn a_record_is_revoked_only_by_a_revocation_of_its_partition_after_it_was_read() {
        let context = RelanceContext::default();
        let before = context.revocation_count();
        context.record_revocation(&partitions(&[("invoices", 0), ("customers", 1)]));
        let between = context.revocation_count();
        assert!(context.revoked_since(before, "invoices", 0));
        assert!(context.revoked_since(before, "customers", 1));
        assert!(
            !context.revoked_since(before, "invoices", 1),
            "another partition"
        );
        assert!(
            !context.revoked_since(between, "invoices", 0),
            "read again after the revocation"
        );
        context.record_revocation(&partitions(&[("invoices", 1)]));
        assert!(context.revoked_since(between, "invoices", 1));
        assert!(context.revoked_since(before, "invoices", 0));
        // Forgetting what no record read before still needs keeps what later ones do.
        context.forget_revocations_up_to(between);
        assert!(context.revoked_since(between, "invoices", 1));
        assert!(
            !context.revoked_since(before, "invoices", 0),
            "forgotten: no record read before it is left"
        );
    }
}
