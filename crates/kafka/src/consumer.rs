//! The consumer runner: reads records in batches, hands each batch to a handler, and commits
//! the batch's offsets only after the handler reports it durably processed.
//!
//! - A handler failure the handler calls transient (database down) is retried with exponential
//!   backoff and jitter, without reading further: nothing is stepped over. If the outage lasts
//!   longer than `max.poll.interval.ms`, the member leaves its group and rejoins when it polls
//!   again, continuing from the last committed offset.
//! - A failure the handler calls refused (the database refused a value of the batch) never
//!   stops the runner: it bisects the batch, applying what it can, until the records at fault
//!   are alone, and hands each to the handler's dead-letter writer with the reason. A poison
//!   record costs a few extra transactions, never a crash loop.
//! - A fatal failure stops the runner with an error, without committing the failed batch;
//!   the other lanes finish the batch in hand first (one waiting to retry gives it up).
//! - On shutdown, the batch in hand is finished (or, while waiting to retry, abandoned),
//!   committed if processed, and the consumer leaves its group. Abandoned records are
//!   redelivered to whoever owns the partition next; handlers are idempotent.
//! - Offsets are committed synchronously after every batch. The runner polls only when no
//!   lane is at work, so a rebalance (which only happens inside a poll) never finds processed
//!   but uncommitted work.
//! - With several lanes, each lane's batch is its own task. Records read are dealt to the lanes
//!   by partition number, a partition number in one lane at a time (which lane changes from
//!   batch to batch, so that one partition's run of records does not leave the other lanes
//!   idle); records no lane can take yet are held back (not processed, not committed). A lane
//!   that finishes while others work takes a full batch of the held-back records of partitions
//!   no lane has in hand, without waiting for the others. Records of a partition revoked after
//!   they were read are dropped: its fetch position went back to the committed offset, so its
//!   owner, this member again or another, reads them again in order.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use relance_config::KafkaSettings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::consumer_config;
use crate::context::RelanceContext;
use crate::metrics::KafkaMetrics;

/// A record as read from Kafka, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl ConsumedRecord {
    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_string(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// A boxed error a handler reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a batch failed.
#[derive(Debug)]
pub enum HandlerError {
    /// A dependency is unavailable (database, broker): the same batch is retried later.
    Transient(BoxError),
    /// The content of the batch was refused (a value the database cannot store, a constraint
    /// it breaks): the runner isolates the records at fault and dead-letters them.
    Refused(BoxError),
    /// Retrying cannot help: the runner stops without committing.
    Fatal(BoxError),
}

/// What processes batches. `Ok` means every record of the batch is durably handled (applied in
/// a committed transaction or written to the dead-letter topic), so its offset may be
/// committed. The handler must be idempotent: a batch may be delivered again after a crash.
pub trait BatchHandler: Send {
    fn handle(
        &mut self,
        batch: &[ConsumedRecord],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Writes one record whose content was refused to the dead-letter topic with `detail` (the
    /// refusal), durably, so its offset may be committed. Handlers that cannot say so refuse,
    /// and the runner stops.
    fn dead_letter(
        &mut self,
        record: &ConsumedRecord,
        detail: String,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = record;
        async move { Err(HandlerError::Fatal(detail.into())) }
    }
}

/// How the runner batches and retries.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Most records in a batch.
    pub batch_max_messages: usize,
    /// Longest the runner waits to fill a batch once it has a first record.
    pub batch_max_wait: Duration,
    /// First pause after a transient failure; it doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_max_messages: 500,
            batch_max_wait: Duration::from_millis(50),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// Why the runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("creating the Kafka consumer")]
    Create(#[source] KafkaError),
    #[error("subscribing to {topics:?}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("the batch handler failed for good")]
    Handler(#[source] BoxError),
}

/// A consumer group member that feeds a [`BatchHandler`].
pub struct ConsumerRunner {
    consumer: Arc<StreamConsumer<RelanceContext>>,
    options: RunnerOptions,
    metrics: KafkaMetrics,
}

impl ConsumerRunner {
    /// Joins `group_id` on `topics` (the group is joined on the first poll).
    ///
    /// # Errors
    /// [`ConsumerError`] when the consumer cannot be created or subscribed.
    pub fn new(
        settings: &KafkaSettings,
        service: &str,
        group_id: &str,
        topics: &[&str],
        options: RunnerOptions,
        metrics: KafkaMetrics,
    ) -> Result<Self, ConsumerError> {
        let consumer: StreamConsumer<RelanceContext> = consumer_config(settings, service, group_id)
            .create_with_context(RelanceContext::for_consumer(
                metrics.consumer_lag_gauge(),
                metrics.assigned_partitions_gauge(),
                topics,
            ))
            .map_err(ConsumerError::Create)?;
        consumer
            .subscribe(topics)
            .map_err(|source| ConsumerError::Subscribe {
                topics: topics.iter().map(ToString::to_string).collect(),
                source,
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            options,
            metrics,
        })
    }

    /// Runs until `shutdown` is cancelled (then returns `Ok`) or the handler fails for good.
    ///
    /// # Errors
    /// [`ConsumerError::Handler`] with the handler's fatal error.
    pub async fn run<H: BatchHandler + 'static>(
        self,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), ConsumerError> {
        self.run_lanes(vec![handler], shutdown).await
    }

    /// Like [`run`](Self::run), with a handler a lane, so that one lane's work in the database
    /// overlaps another's on the CPU. Records are dealt to lanes by partition number, a
    /// partition number in one lane at a time: a key's records are handled in order, one batch
    /// at a time, and so are those of a key on several topics of as many partitions (a
    /// customer's invoices and profile); which lane takes a partition changes from batch to
    /// batch. Each lane's batch is its own task and is committed as soon as it is handled. A
    /// lane that finishes while others work takes its next batch from the records held back,
    /// of partitions no lane has in hand, if they make a full batch; otherwise it waits. The
    /// runner polls only when every lane is idle, so a rebalance (which happens only inside a
    /// poll) never finds processed but uncommitted work. A poll reads until the records read
    /// would fill every lane's batch (or the batch's time is up), and on while more are
    /// already fetched, holding back up to [`HELD_BATCHES_A_LANE`] batches a lane; the
    /// partition whose first record was read first is dealt first. Lanes can still meet on a
    /// row (topics of different partition counts); handlers lock in one order and retry a
    /// deadlock as transient.
    ///
    /// # Errors
    /// [`ConsumerError::Handler`] with a lane's fatal error.
    ///
    /// # Panics
    /// When `handlers` is empty.
    pub async fn run_lanes<H: BatchHandler + 'static>(
        self,
        handlers: Vec<H>,
        shutdown: CancellationToken,
    ) -> Result<(), ConsumerError> {
        let consumer = Arc::clone(&self.consumer);
        let result = self.drive_lanes(handlers, shutdown).await;
        // Dropping the last handle closes the consumer: librdkafka leaves the group and waits
        // for its broker threads, blocking. Off the async threads, so that a slow broker never
        // freezes a current-thread runtime (timers, the shutdown deadline) meanwhile.
        if tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .is_err()
        {
            tracing::warn!("Closing the consumer panicked.");
        }
        result
    }

    async fn drive_lanes<H: BatchHandler + 'static>(
        self,
        handlers: Vec<H>,
        shutdown: CancellationToken,
    ) -> Result<(), ConsumerError> {
        assert!(
            !handlers.is_empty(),
            "a consumer needs at least one handler"
        );
        let lanes = handlers.len();
        let most = self.options.batch_max_messages;
        // A lane's handler is here while the lane is idle, and in its task while it works.
        let mut idle: Vec<Option<H>> = handlers.into_iter().map(Some).collect();
        // The partition numbers of each lane's batch in hand.
        let mut in_hand: Vec<Vec<i32>> = vec![Vec::new(); lanes];
        let mut held = Held::default();
        // A JoinSet, so that dropping the runner (aborted) aborts the lanes.
        let mut tasks: JoinSet<LaneOutcome<H>> = JoinSet::new();
        let mut stopping = false;
        // A lane's fatal error, returned once the other lanes have finished their batches.
        let mut failure: Option<ConsumerError> = None;
        // Cancelled on shutdown, and on a fatal error: a lane waiting to retry then gives its
        // batch up instead of holding the error back.
        let lanes_stop = shutdown.child_token();
        loop {
            if tasks.is_empty() {
                if let Some(error) = failure {
                    return Err(error);
                }
                // Every lane is idle: the one moment the runner polls.
                if stopping || shutdown.is_cancelled() {
                    break;
                }
                if held.is_empty() {
                    let Some(first) = self.next_record(&shutdown).await else {
                        break;
                    };
                    let read_at = self.consumer.context().revocation_count();
                    held.push((read_at, first));
                }
                let filling = std::time::Instant::now();
                let read = self.fill_held(&mut held, lanes).await;
                tracing::debug!(
                    read,
                    held = held.total,
                    fill_ms = filling.elapsed().as_millis(),
                    "Consumer poll."
                );
                let all: Vec<usize> = (0..lanes).collect();
                let parts = self.deal(&mut held, &all, &[]);
                for (lane, part) in parts.into_iter().enumerate() {
                    self.start_lane(&mut tasks, &mut idle, &mut in_hand, lane, part, &lanes_stop);
                }
                continue;
            }
            let Some(finished) = tasks.join_next().await else {
                continue;
            };
            let (lane, handler, batch, outcome, took) = match finished {
                Ok(finished) => finished,
                Err(panicked) => {
                    failure = Some(ConsumerError::Handler(Box::new(panicked)));
                    stopping = true;
                    lanes_stop.cancel();
                    continue;
                }
            };
            idle[lane] = Some(handler);
            in_hand[lane].clear();
            let committing = std::time::Instant::now();
            match outcome {
                Ok(true) => {
                    let records: Vec<&ConsumedRecord> = batch.iter().collect();
                    self.commit(&records).await;
                }
                Ok(false) => stopping = true,
                // A lane failed for good: its batch is not committed, nothing new starts,
                // and the other lanes finish their batches (committed) before the runner
                // returns the error, rather than being cut off mid-transaction.
                Err(error) => {
                    failure = Some(error);
                    stopping = true;
                    lanes_stop.cancel();
                }
            }
            // Where time goes: whether lanes wait on the poll, on each other or on the commit.
            tracing::debug!(
                lane,
                records = batch.len(),
                handle_ms = took.as_millis(),
                commit_ms = committing.elapsed().as_millis(),
                held = held.total,
                "Consumer batch."
            );
            // With every lane idle the next batches come from a poll, which tops up what is
            // held back with the other partitions' records.
            if stopping || shutdown.is_cancelled() || tasks.is_empty() {
                continue;
            }
            // Idle lanes take full batches of the partitions no lane has in hand, without a
            // poll: the others are still at work.
            loop {
                let busy: Vec<i32> = in_hand.iter().flatten().copied().collect();
                let Some(next) = (0..lanes).find(|&lane| idle[lane].is_some()) else {
                    break;
                };
                if held.available(&busy) < most {
                    break;
                }
                let parts = self.deal(&mut held, &[next], &busy);
                let Some(part) = parts.into_iter().nth(next) else {
                    break;
                };
                if part.is_empty() {
                    break;
                }
                self.start_lane(&mut tasks, &mut idle, &mut in_hand, next, part, &lanes_stop);
            }
        }
        tracing::info!("Consumer stopped; leaving the group.");
        Ok(())
    }

    /// Hands `part` to lane `lane` in its own task, so that one lane's CPU work (decoding,
    /// planning) runs beside another's, not only beside its wait on the database.
    fn start_lane<H: BatchHandler + 'static>(
        &self,
        tasks: &mut JoinSet<LaneOutcome<H>>,
        idle: &mut [Option<H>],
        in_hand: &mut [Vec<i32>],
        lane: usize,
        part: Vec<Tagged>,
        shutdown: &CancellationToken,
    ) {
        if part.is_empty() {
            return;
        }
        let Some(mut handler) = idle[lane].take() else {
            return;
        };
        let mut partitions: Vec<i32> = part.iter().map(|(_, record)| record.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        in_hand[lane] = partitions;
        let batch: Vec<ConsumedRecord> = part.into_iter().map(|(_, record)| record).collect();
        let retrying = Retrying {
            options: self.options.clone(),
            metrics: self.metrics.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.spawn(
            async move {
                let started = std::time::Instant::now();
                let outcome = retrying.process(&mut handler, &batch, &shutdown).await;
                (lane, handler, batch, outcome, started.elapsed())
            }
            .in_current_span(),
        );
    }

    /// Batches for `lanes` from the records held back, of partition numbers not in `busy`. A
    /// partition number's records go to one lane (its first `batch_max_messages` at most), and
    /// a partition number is in one lane at a time, so a key's records are handled in order,
    /// one batch at a time; which lane takes a partition changes from batch to batch, so that a
    /// run of one partition's records (a fetch brings them so) does not leave a lane idle while
    /// its own partitions' records have not come yet. Records of partitions revoked after they
    /// were read are dropped: the partition's fetch position went back to its committed offset
    /// (reassigned to this member, librdkafka reads them again) or to another member, so
    /// handling them now would handle them twice, or beside their new owner. The result has a
    /// batch for every lane, empty for those not in `lanes`.
    fn deal(&self, held: &mut Held, lanes: &[usize], busy: &[i32]) -> Vec<Vec<Tagged>> {
        let context = self.consumer.context();
        let most = self.options.batch_max_messages;
        let count = lanes.iter().copied().max().map_or(0, |lane| lane + 1);
        let mut parts: Vec<Vec<Tagged>> = (0..count).map(|_| Vec::new()).collect();
        for partition in held.in_turn() {
            if busy.contains(&partition) {
                continue;
            }
            let Some(lane) = lanes
                .iter()
                .copied()
                .filter(|&lane| parts[lane].len() < most)
                .min_by_key(|&lane| parts[lane].len())
            else {
                break;
            };
            let Some(queue) = held.queues.get_mut(&partition) else {
                continue;
            };
            while parts[lane].len() < most {
                let Some((_, (read_at, record))) = queue.pop_front() else {
                    break;
                };
                held.total -= 1;
                if !context.revoked_since(read_at, &record.topic, record.partition) {
                    parts[lane].push((read_at, record));
                }
            }
        }
        held.queues.retain(|_, queue| !queue.is_empty());
        // Revocations older than every record still held back concern none of them (those
        // dealt were checked above).
        let oldest = held
            .queues
            .values()
            .filter_map(VecDeque::front)
            .map(|(_, (read_at, _))| *read_at)
            .min()
            .unwrap_or_else(|| context.revocation_count());
        context.forget_revocations_up_to(oldest);
        parts
    }

    /// The next record, or `None` once shutdown is requested.
    async fn next_record(&self, shutdown: &CancellationToken) -> Option<ConsumedRecord> {
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => {
                    self.metrics.record_consumed(message.topic());
                    return Some(ConsumedRecord::from_message(&message));
                }
                // Broker and transport errors surface here too; librdkafka keeps retrying.
                Err(error) => {
                    tracing::warn!(error = %error, "Kafka consumer error.");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }

    /// Reads on until the records held back would fill every lane's batch, or the batch's time
    /// is up, and on while records are already fetched, up to [`HELD_BATCHES_A_LANE`] batches
    /// a lane held back in all: lanes that finish early take their next batch from them. Each
    /// record is tagged with the revocations seen when it was read. Returns how many were read.
    async fn fill_held(&self, held: &mut Held, lanes: usize) -> usize {
        let deadline = tokio::time::Instant::now() + self.options.batch_max_wait;
        let most = self.options.batch_max_messages;
        let most_held = most
            .saturating_mul(HELD_BATCHES_A_LANE)
            .saturating_mul(lanes);
        let mut read = 0;
        while held.total < most_held {
            // Once the lanes would be full, only what librdkafka has already fetched: a
            // timeout at the present still polls the read once (tokio rounds it up to the next
            // millisecond).
            let until = if held.fills(lanes, most) {
                tokio::time::Instant::now()
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    self.metrics.record_consumed(message.topic());
                    let read_at = self.consumer.context().revocation_count();
                    held.push((read_at, ConsumedRecord::from_message(&message)));
                    read += 1;
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "Kafka consumer error.");
                    break;
                }
                Err(_) => break,
            }
        }
        read
    }

    async fn commit(&self, batch: &[&ConsumedRecord]) {
        let mut next_offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for record in batch {
            let next = next_offsets
                .entry((record.topic.as_str(), record.partition))
                .or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        let mut offsets = TopicPartitionList::with_capacity(next_offsets.len());
        for ((topic, partition), next) in next_offsets {
            if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(next))
            {
                self.metrics.record_commit_failure(&error);
                return;
            }
        }
        let consumer = Arc::clone(&self.consumer);
        // A synchronous commit blocks its thread until the broker answers.
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => self.metrics.record_batch_committed(),
            Ok(Err(error)) => self.metrics.record_commit_failure(&error),
            Err(join_error) => tracing::error!(error = %join_error, "Offset commit task failed."),
        }
    }
}

/// What a lane needs to handle its batch away from the runner: the retry policy and metrics.
#[derive(Clone)]
struct Retrying {
    options: RunnerOptions,
    metrics: KafkaMetrics,
}

impl Retrying {
    /// Returns whether the batch was processed (`false`: abandoned at shutdown).
    async fn process<H: BatchHandler>(
        &self,
        handler: &mut H,
        batch: &[ConsumedRecord],
        shutdown: &CancellationToken,
    ) -> Result<bool, ConsumerError> {
        let mut attempt: u32 = 0;
        loop {
            // The handler is not interrupted by shutdown: in-flight work finishes, within the
            // service's shutdown timeout.
            match handler.handle(batch).instrument(batch_span(batch)).await {
                Ok(()) => return Ok(true),
                Err(HandlerError::Fatal(error)) => return Err(ConsumerError::Handler(error)),
                Err(HandlerError::Refused(error)) => {
                    tracing::warn!(records = batch.len(), error = %error, "A batch was refused for its content; isolating the records at fault.");
                    return self.isolate(handler, batch, shutdown).await;
                }
                Err(HandlerError::Transient(error)) => {
                    attempt = attempt.saturating_add(1);
                    self.metrics.record_batch_retry(attempt, error.as_ref());
                    let pause = backoff(&self.options, attempt);
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            tracing::info!(records = batch.len(), "Shutdown while retrying; the batch is left for redelivery.");
                            return Ok(false);
                        }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Bisects a refused batch: halves are handled in order (so a partition's records keep
    /// their order), a refused half is split again, and a record refused alone is
    /// dead-lettered. Returns whether everything was handled (`false`: abandoned at shutdown).
    async fn isolate<H: BatchHandler>(
        &self,
        handler: &mut H,
        batch: &[ConsumedRecord],
        shutdown: &CancellationToken,
    ) -> Result<bool, ConsumerError> {
        let mut pending: std::collections::VecDeque<&[ConsumedRecord]> =
            std::collections::VecDeque::new();
        let middle = batch.len() / 2;
        pending.push_back(&batch[..middle.max(1)]);
        if middle >= 1 && middle < batch.len() {
            pending.push_back(&batch[middle..]);
        }
        let mut attempt: u32 = 0;
        while let Some(part) = pending.pop_front() {
            let result = if part.len() == 1 {
                match handler.handle(part).instrument(batch_span(part)).await {
                    Err(HandlerError::Refused(error)) => {
                        self.metrics.record_isolated(&part[0].topic);
                        tracing::error!(topic = %part[0].topic, partition = part[0].partition, offset = part[0].offset, error = %error, "A record was refused for its content; it goes to the dead-letter topic and processing continues.");
                        handler.dead_letter(&part[0], error.to_string()).await
                    }
                    other => other,
                }
            } else {
                handler.handle(part).instrument(batch_span(part)).await
            };
            match result {
                Ok(()) => attempt = 0,
                Err(HandlerError::Fatal(error)) => return Err(ConsumerError::Handler(error)),
                Err(HandlerError::Refused(_)) => {
                    let middle = part.len() / 2;
                    pending.push_front(&part[middle..]);
                    pending.push_front(&part[..middle]);
                }
                Err(HandlerError::Transient(error)) => {
                    attempt = attempt.saturating_add(1);
                    self.metrics.record_batch_retry(attempt, error.as_ref());
                    pending.push_front(part);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(false),
                        () = tokio::time::sleep(backoff(&self.options, attempt)) => {}
                    }
                }
            }
        }
        Ok(true)
    }
}

/// A record and the number of revocations its consumer had seen when it was read.
type Tagged = (u64, ConsumedRecord);

/// What a lane's task gives back: its lane, its handler, its batch, whether the batch was
/// processed, and how long that took.
type LaneOutcome<H> = (
    usize,
    H,
    Vec<ConsumedRecord>,
    Result<bool, ConsumerError>,
    Duration,
);

/// How many batches of records a lane may hold back (in all: lanes × this) while the others
/// fill, and for lanes that finish before the others. A fetch brings up to
/// `max.partition.fetch.bytes` of one partition in a run (a thousand or more small records),
/// so one batch was not enough to reach the other partitions' records behind it.
const HELD_BATCHES_A_LANE: usize = 4;

/// Records read and not yet handled, by partition number (a key's records on several topics
/// of as many partitions share one), in the order they were read.
#[derive(Default)]
struct Held {
    /// Each record with its place in the reading order.
    queues: BTreeMap<i32, VecDeque<(u64, Tagged)>>,
    total: usize,
    read: u64,
}

impl Held {
    fn push(&mut self, tagged: Tagged) {
        self.queues
            .entry(tagged.1.partition)
            .or_default()
            .push_back((self.read, tagged));
        self.read += 1;
        self.total += 1;
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Records held back of partition numbers not in `busy`.
    fn available(&self, busy: &[i32]) -> usize {
        self.queues
            .iter()
            .filter(|(partition, _)| !busy.contains(partition))
            .map(|(_, queue)| queue.len())
            .sum()
    }

    /// Partition numbers with records, the one whose first record was read first, first: no
    /// partition waits behind others' runs (a payment behind a backlog of invoices).
    fn in_turn(&self) -> Vec<i32> {
        let mut partitions: Vec<(u64, i32)> = self
            .queues
            .iter()
            .filter_map(|(partition, queue)| queue.front().map(|(read, _)| (*read, *partition)))
            .collect();
        partitions.sort_unstable();
        partitions
            .into_iter()
            .map(|(_, partition)| partition)
            .collect()
    }

    /// Whether dealing now would give every lane a full batch (as [`ConsumerRunner::deal`]
    /// deals, revocations aside).
    fn fills(&self, lanes: usize, most: usize) -> bool {
        if self.total < lanes.saturating_mul(most) {
            return false;
        }
        let mut loads = vec![0usize; lanes];
        for partition in self.in_turn() {
            let Some(lane) = (0..lanes)
                .filter(|&lane| loads[lane] < most)
                .min_by_key(|&lane| loads[lane])
            else {
                break;
            };
            let records = self.queues.get(&partition).map_or(0, VecDeque::len);
            loads[lane] = (loads[lane] + records).min(most);
        }
        loads.iter().all(|&load| load >= most)
    }
}

/// Exponential backoff with ±20 % jitter, so replicas do not retry in lockstep.
fn backoff(options: &RunnerOptions, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let base = options
        .retry_initial
        .saturating_mul(1 << exponent)
        .min(options.retry_max);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let unit = (hasher.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(0.8 + 0.4 * unit)
}

/// The span of one batch: what it holds, so that every log line and trace of its processing
/// says which records (`topic/partition@offset`) it came from.
fn batch_span(batch: &[ConsumedRecord]) -> tracing::Span {
    let place = |record: &ConsumedRecord| {
        format!("{}/{}@{}", record.topic, record.partition, record.offset)
    };
    tracing::info_span!(
        "kafka.batch",
        records = batch.len(),
        first = batch.first().map(place).unwrap_or_default(),
        last = batch.last().map(place).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let options = RunnerOptions {
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            ..RunnerOptions::default()
        };
        for attempt in 1..40 {
            let expected = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(2));
            let pause = backoff(&options, attempt);
            assert!(
                pause >= expected.mul_f64(0.8),
                "attempt {attempt}: {pause:?}"
            );
            assert!(
                pause <= expected.mul_f64(1.2),
                "attempt {attempt}: {pause:?}"
            );
        }
    }
}
