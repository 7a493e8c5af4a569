//! Kafka for relance: client configuration from settings, an idempotent producer, a consumer
//! runner that commits offsets only after the work is durable, and the dead-letter writer.
//!
//! The invariant every consumer keeps: an offset is committed only when every record below it
//! is either applied in a committed database transaction or confirmed written to the
//! dead-letter topic. Redelivery after a crash is harmless because effects are idempotent.

mod admin;
mod client;
mod consumer;
mod context;
mod dead_letter;
mod metrics;
mod producer;

pub use admin::{ensure_topics, TopicSpec};
pub use client::{consumer_config, producer_config, ClientRole};
pub use consumer::{
    BatchHandler, ConsumedRecord, ConsumerError, ConsumerRunner, HandlerError, RunnerOptions,
};
pub use context::RelanceContext;
pub use dead_letter::{BuiltDeadLetter, DeadLetter, DeadLetterWriter, DLQ_HEADER_PREFIX};
pub use metrics::KafkaMetrics;
pub use producer::{broker_reachable, EventProducer, OutgoingRecord, ProduceError};

pub use rdkafka::error::KafkaError;
