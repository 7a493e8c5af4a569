//! The producer every relance service uses: idempotent, `acks=all`, and a record counts as
//! sent only once its delivery report arrives. It can be recreated in place: an idempotent
//! producer that lost its producer state (a broker restarted, `UnknownProducerId`) enters a
//! fatal state in which every send fails until a new one replaces it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use relance_config::KafkaSettings;

use crate::client::producer_config;
use crate::context::RelanceContext;

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a record was not produced.
#[derive(Debug, thiserror::Error)]
#[error("producing to {topic}: {source}")]
pub struct ProduceError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

impl ProduceError {
    /// Whether the failure says the producer itself is stuck (its state lost by the broker,
    /// or nothing acknowledged in time), so that a new producer may succeed where it fails.
    pub fn suggests_a_new_producer(&self) -> bool {
        matches!(
            self.source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::Fatal
            )
        )
    }

    /// Whether the failure is the topic's, not the record's: it does not exist (yet) or this
    /// service may not write to it. Every record for that topic fails alike until ops fix it,
    /// while other topics publish.
    pub fn is_topic_unavailable(&self) -> bool {
        matches!(
            self.source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::TopicAuthorizationFailed
            )
        )
    }

    /// Whether producing the same record again may succeed. A record the broker refuses for
    /// its content (too large, invalid) or for a topic name no topic can have will never be
    /// accepted. A topic that does not exist yet or an ACL not granted yet are fixed by ops
    /// without touching the record: those are retried ([`ProduceError::is_topic_unavailable`]:
    /// the relay holds the topic) rather than set aside with the reminder they carry.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidTopic
            )
        )
    }
}

/// An idempotent producer, cheap to clone; clones share it, and a recreation.
#[derive(Clone)]
pub struct EventProducer {
    inner: Arc<RwLock<FutureProducer<RelanceContext>>>,
    settings: Arc<KafkaSettings>,
    service: Arc<str>,
    queue_timeout: Duration,
}

impl EventProducer {
    /// A producer for `service`.
    ///
    /// # Errors
    /// [`KafkaError`] when librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings, service: &str) -> Result<Self, KafkaError> {
        let inner =
            producer_config(settings, service).create_with_context(RelanceContext::default())?;
        Ok(Self {
            inner: Arc::new(RwLock::new(inner)),
            settings: Arc::new(settings.clone()),
            service: service.into(),
            queue_timeout: Duration::from_millis(settings.message_timeout_ms),
        })
    }

    fn current(&self) -> FutureProducer<RelanceContext> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The producer's fatal error, if it has one: until it is recreated, nothing it sends
    /// will be delivered.
    pub fn fatal_error(&self) -> Option<String> {
        self.current()
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Replaces the producer by a new one (new producer id, fresh state); records in flight
    /// in the old one fail and are retried by their callers.
    ///
    /// # Errors
    /// [`KafkaError`] when librdkafka rejects the configuration.
    pub fn recreate(&self) -> Result<(), KafkaError> {
        let fresh = producer_config(&self.settings, &self.service)
            .create_with_context(RelanceContext::default())?;
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Produces `record` and waits for the broker's acknowledgement. A full local queue is
    /// backpressure: the call waits for room rather than dropping the record.
    ///
    /// # Errors
    /// [`ProduceError`] when the broker did not acknowledge the record in time or refused it.
    pub async fn send(&self, record: &OutgoingRecord) -> Result<(i32, i64), ProduceError> {
        self.current()
            .send(future_record(record), Timeout::After(self.queue_timeout))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(source, _)| ProduceError {
                topic: record.topic.clone(),
                source,
            })
    }

    /// Hands all `records` to the producer in order, then waits for every acknowledgement; one
    /// result per record, in the same order. Records of one key keep their order on the broker.
    pub async fn send_all(
        &self,
        records: &[OutgoingRecord],
    ) -> Vec<Result<(i32, i64), ProduceError>> {
        let producer = self.current();
        let mut in_flight = Vec::with_capacity(records.len());
        for record in records {
            let deadline = tokio::time::Instant::now() + self.queue_timeout;
            loop {
                match producer.send_result(future_record(record)) {
                    Ok(delivery) => {
                        in_flight.push(Ok(delivery));
                        break;
                    }
                    // A full local queue is backpressure: wait for room, never drop.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((source, _)) => {
                        in_flight.push(Err(source));
                        break;
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(records.len());
        for (record, delivery) in records.iter().zip(in_flight) {
            let result = match delivery {
                Ok(future) => match future.await {
                    Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
                    Ok(Err((source, _))) => Err(source),
                    Err(_cancelled) => Err(KafkaError::Canceled),
                },
                Err(source) => Err(source),
            };
            results.push(result.map_err(|source| ProduceError {
                topic: record.topic.clone(),
                source,
            }));
        }
        results
    }

    /// Waits until every record handed to the producer is acknowledged or `timeout` passes.
    ///
    /// # Errors
    /// [`KafkaError`] when records are still in flight at the timeout.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().flush(Timeout::After(timeout))
    }

    /// Checks that a broker answers a metadata request within `timeout`.
    ///
    /// # Errors
    /// The reason it does not, as text.
    pub async fn check_broker(&self, timeout: Duration) -> Result<(), String> {
        if let Some(fatal) = self.fatal_error() {
            return Err(format!("the producer is in a fatal state: {fatal}"));
        }
        broker_reachable(self.current(), timeout).await
    }
}

fn future_record(record: &OutgoingRecord) -> FutureRecord<'_, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key: key.as_str(),
            value: value.as_deref(),
        });
    }
    let mut future_record = FutureRecord::to(&record.topic)
        .payload(record.payload.as_slice())
        .headers(headers);
    if let Some(key) = &record.key {
        future_record = future_record.key(key.as_slice());
    }
    future_record
}

/// Asks the cluster for its metadata, off the async runtime (the call blocks).
///
/// # Errors
/// The reason the brokers did not answer, as text.
pub async fn broker_reachable(
    producer: FutureProducer<RelanceContext>,
    timeout: Duration,
) -> Result<(), String> {
    let result = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Timeout::After(timeout))
            .map(|metadata| metadata.brokers().len())
    })
    .await;
    match result {
        Ok(Ok(brokers)) if brokers > 0 => Ok(()),
        Ok(Ok(_)) => Err("the cluster reported no brokers".into()),
        Ok(Err(error)) => Err(format!("metadata request failed: {error}")),
        Err(error) => Err(format!("metadata request panicked: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: RDKafkaErrorCode) -> ProduceError {
        ProduceError {
            topic: "relance.reminders".into(),
            source: KafkaError::MessageProduction(code),
        }
    }

    /// A topic not created yet (a deploy before the topics, a topic deleted by mistake, a
    /// cluster without auto-creation) or an ACL not granted yet is fixed by ops without
    /// touching the record: setting the record aside for good would lose a reminder.
    #[test]
    fn a_missing_topic_or_a_refused_authorization_is_retried_a_refused_record_is_not() {
        for passing in [
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(failure(passing).is_retryable(), "{passing:?}");
        }
        for topic_level in [
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(
                failure(topic_level).is_topic_unavailable(),
                "{topic_level:?}"
            );
        }
        assert!(!failure(RDKafkaErrorCode::MessageTimedOut).is_topic_unavailable());
        for for_good in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::InvalidTopic,
        ] {
            assert!(!failure(for_good).is_retryable(), "{for_good:?}");
        }
    }
}
