//! The readiness checks every service has: PostgreSQL and the Kafka brokers.

use std::time::Duration;

use relance_kafka::EventProducer;
use relance_telemetry::{CheckFuture, ReadinessCheck};
use sqlx::PgPool;

pub(crate) struct DatabaseCheck(pub PgPool);

impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> CheckFuture {
        let pool = self.0.clone();
        Box::pin(async move {
            relance_storage::ping(&pool).await.map_err(|error| {
                match std::error::Error::source(&error) {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.to_string(),
                }
            })
        })
    }
}

pub(crate) struct KafkaCheck {
    pub producer: EventProducer,
    pub timeout: Duration,
}

impl ReadinessCheck for KafkaCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self) -> CheckFuture {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        Box::pin(async move { producer.check_broker(timeout).await })
    }
}
