//! librdkafka callbacks routed to `tracing`, with rebalances logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

/// The client context of every relance Kafka client.
#[derive(Clone, Default)]
pub struct RelanceContext {
    /// Where a consumer reports its lag per partition, from librdkafka's statistics.
    consumer_lag: Option<prometheus::IntGaugeVec>,
    /// Where a consumer counts the partitions assigned to it, by topic, and the topics it
    /// reads (each shows 0 when it holds none of theirs).
    assigned_partitions: Option<(prometheus::IntGaugeVec, Vec<String>)>,
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
    /// `partition`) and how many partitions of each of `topics` it holds to
    /// `assigned_partitions` (label `topic`; each topic shows 0 from the start).
    pub fn for_consumer(
        consumer_lag: prometheus::IntGaugeVec,
        assigned_partitions: prometheus::IntGaugeVec,
        topics: &[&str],
    ) -> Self {
        for topic in topics {
            // Created at 0 if new; a value already there is left to the next rebalance.
            assigned_partitions.with_label_values(&[topic]);
        }
        Self {
            consumer_lag: Some(consumer_lag),
            assigned_partitions: Some((
                assigned_partitions,
                topics.iter().map(ToString::to_string).collect(),
            )),
            revocations: Arc::default(),
        }
    }

    /// Sets the assigned-partitions gauge from the consumer's whole assignment after a
    /// rebalance. Counted again each time rather than added to, so that neither protocol
    /// (eager, incremental), nor a rebalance that failed, nor an assignment librdkafka could
    /// not apply, leaves it off.
    fn record_assignment(&self, assignment: &TopicPartitionList) {
        let Some((gauge, topics)) = &self.assigned_partitions else {
            return;
        };
        for topic in topics {
            let held = assignment.elements_for_topic(topic).len();
            gauge
                .with_label_values(&[topic.as_str()])
                .set(i64::try_from(held).unwrap_or(i64::MAX));
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
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "Partitions assigned.");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "Rebalance failed."),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        match consumer.assignment() {
            Ok(assignment) => self.record_assignment(&assignment),
            Err(error) => {
                tracing::warn!(error = %error, "The consumer's assignment could not be read.");
            }
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
    use prometheus::core::Collector as _;

    use super::*;

    fn partitions(list: &[(&str, i32)]) -> TopicPartitionList {
        let mut partitions = TopicPartitionList::new();
        for (topic, partition) in list {
            partitions.add_partition(topic, *partition);
        }
        partitions
    }

    #[test]
    fn assigned_partitions_are_counted_by_topic_from_the_whole_assignment() {
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("lag", "lag"),
            &["topic", "partition"],
        )
        .expect("gauge");
        let assigned =
            prometheus::IntGaugeVec::new(prometheus::Opts::new("assigned", "assigned"), &["topic"])
                .expect("gauge");
        let context =
            RelanceContext::for_consumer(lag, assigned.clone(), &["invoices", "customers"]);
        let count = |topic: &str| assigned.with_label_values(&[topic]).get();
        // Every topic read shows 0 before the group has answered.
        assert_eq!(assigned.collect()[0].get_metric().len(), 2);
        assert_eq!((count("invoices"), count("customers")), (0, 0));

        context.record_assignment(&partitions(&[
            ("invoices", 0),
            ("invoices", 1),
            ("customers", 0),
        ]));
        assert_eq!((count("invoices"), count("customers")), (2, 1));
        // An incremental rebalance moved one partition of invoices away, and customers' only.
        context.record_assignment(&partitions(&[("invoices", 0)]));
        assert_eq!((count("invoices"), count("customers")), (1, 0));
        // Whatever happened before, the count is the assignment's.
        context.record_assignment(&partitions(&[]));
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
