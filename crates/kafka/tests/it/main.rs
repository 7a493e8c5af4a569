//! Against the real broker started by `make up` (tansu in tests, any Kafka in production).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod consumer_group;
mod dead_letter;
mod runner;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use relance_config::{ServiceName, Settings, TopicSettings};
use relance_kafka::{
    BatchHandler, ConsumedRecord, ConsumerRunner, EventProducer, HandlerError, KafkaMetrics,
    OutgoingRecord, RunnerOptions,
};
use relance_testkit::{create_unique_topics, test_settings, unique_name};
use tokio_util::sync::CancellationToken;

pub struct Fixture {
    pub settings: Settings,
    pub topics: TopicSettings,
    pub producer: EventProducer,
}

pub async fn fixture(label: &str, partitions: i32) -> Fixture {
    let settings = test_settings(ServiceName::Ingestor);
    let topics = create_unique_topics(&settings, label, partitions).await;
    let producer = EventProducer::new(&settings.kafka, "test").expect("producer");
    Fixture {
        settings,
        topics,
        producer,
    }
}

/// A handler that records what it sees and can be told to fail.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<ConsumedRecord>>>,
    pub transient_failures_left: Arc<Mutex<u32>>,
    pub fatal: Arc<Mutex<bool>>,
    /// A batch holding a record with this payload is refused for its content.
    pub refuse: Option<Vec<u8>>,
    /// Records set aside to the dead-letter topic, with why.
    pub dead_lettered: Arc<Mutex<Vec<(ConsumedRecord, String)>>>,
    /// How long each batch takes, as a database transaction would.
    pub hold: Option<Duration>,
    /// Batches being handled now, by every clone and every recorder sharing it.
    pub in_flight: Arc<AtomicUsize>,
    /// The most batches seen in hand at once.
    pub most_in_flight: Arc<AtomicUsize>,
    /// The size of every batch handled, in order.
    pub batch_sizes: Arc<Mutex<Vec<usize>>>,
    /// Batches begun while another was in hand.
    pub overlapping: Arc<AtomicUsize>,
    /// Every record handled, by every clone sharing it, as each batch ends.
    pub all_handled: Arc<Mutex<Vec<ConsumedRecord>>>,
    /// The first batch begun (by any clone sharing it) takes this long instead of `hold`.
    pub slow_first: Option<Duration>,
    /// Batches begun, by every clone sharing it.
    pub begun: Arc<AtomicUsize>,
    /// For the slow batch, how many batches were begun while it was in hand.
    pub begun_while_slow: Arc<Mutex<Vec<usize>>>,
}

impl Recorder {
    pub fn records(&self) -> Vec<ConsumedRecord> {
        self.seen.lock().unwrap().clone()
    }
}

impl BatchHandler for Recorder {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        if *self.fatal.lock().unwrap() {
            return Err(HandlerError::Fatal("poisoned handler".into()));
        }
        {
            let mut left = self.transient_failures_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(HandlerError::Transient("database unavailable".into()));
            }
        }
        if let Some(poison) = &self.refuse {
            if batch
                .iter()
                .any(|record| record.payload.as_deref() == Some(poison.as_slice()))
            {
                return Err(HandlerError::Refused(
                    "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
                ));
            }
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        if now > 1 {
            self.overlapping.fetch_add(1, Ordering::SeqCst);
        }
        self.batch_sizes.lock().unwrap().push(batch.len());
        let begun = self.begun.fetch_add(1, Ordering::SeqCst);
        let slow = self.slow_first.filter(|_| begun == 0);
        if let Some(hold) = slow {
            tokio::time::sleep(hold).await;
            let since = self.begun.load(Ordering::SeqCst) - begun - 1;
            self.begun_while_slow.lock().unwrap().push(since);
        } else if let Some(hold) = self.hold {
            tokio::time::sleep(hold).await;
        }
        self.seen.lock().unwrap().extend_from_slice(batch);
        self.all_handled.lock().unwrap().extend_from_slice(batch);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        record: &ConsumedRecord,
        detail: String,
    ) -> Result<(), HandlerError> {
        self.dead_lettered
            .lock()
            .unwrap()
            .push((record.clone(), detail));
        Ok(())
    }
}

pub struct RunningConsumer {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), relance_kafka::ConsumerError>>,
}

impl RunningConsumer {
    pub async fn stop(self) -> Result<(), relance_kafka::ConsumerError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("consumer stops in time")
            .expect("consumer task")
    }
}

pub fn start_consumer(
    fixture: &Fixture,
    group: &str,
    topics: &[&str],
    handler: Recorder,
) -> RunningConsumer {
    start_lanes(fixture, group, topics, vec![handler])
}

/// A runner with a handler a lane.
pub fn start_lanes(
    fixture: &Fixture,
    group: &str,
    topics: &[&str],
    handlers: Vec<Recorder>,
) -> RunningConsumer {
    start_lanes_with(
        fixture,
        group,
        topics,
        handlers,
        RunnerOptions {
            batch_max_messages: 50,
            batch_max_wait: Duration::from_millis(20),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    )
}

/// A runner with a handler a lane and these options.
pub fn start_lanes_with(
    fixture: &Fixture,
    group: &str,
    topics: &[&str],
    handlers: Vec<Recorder>,
    options: RunnerOptions,
) -> RunningConsumer {
    start_with_settings(&fixture.settings.kafka, group, topics, handlers, options)
}

/// A runner with these Kafka settings, a handler a lane and these options.
pub fn start_with_settings(
    kafka: &relance_config::KafkaSettings,
    group: &str,
    topics: &[&str],
    handlers: Vec<Recorder>,
    options: RunnerOptions,
) -> RunningConsumer {
    let registry = prometheus::Registry::new();
    let runner = ConsumerRunner::new(
        kafka,
        "test",
        group,
        topics,
        options,
        KafkaMetrics::register(&registry).expect("metrics"),
    )
    .expect("runner");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run_lanes(handlers, shutdown.clone()));
    RunningConsumer { shutdown, task }
}

pub fn record(topic: &str, key: &str, payload: &[u8], headers: &[(&str, &[u8])]) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        key: Some(key.as_bytes().to_vec()),
        payload: payload.to_vec(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), Some(value.to_vec())))
            .collect(),
    }
}

/// The offsets `group` has committed on `topic`'s partitions (-1 for none).
pub fn committed_offsets(
    settings: &Settings,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let consumer: BaseConsumer =
        relance_kafka::consumer_config(&settings.kafka, "test-inspector", group)
            .create()
            .expect("inspector consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|partition| {
            match committed
                .find_partition(topic, partition)
                .map(|element| element.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => -1,
            }
        })
        .collect()
}

pub fn group_name(label: &str) -> String {
    unique_name(label)
}
