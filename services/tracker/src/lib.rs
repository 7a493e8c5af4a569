//! The tracker: opens, clicks, customer actions, provider webhooks, and attribution of payments to reminders.
//!
//! The service's own work arrives with its issue; for now it runs the shared lifecycle:
//! configuration, logs, metrics, readiness against PostgreSQL and Kafka, graceful shutdown.

use relance_runtime::{BoxError, Service, ServiceContext, ServiceName};

/// The tracker service.
pub struct Tracker;

impl Service for Tracker {
    const NAME: ServiceName = ServiceName::Tracker;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        context.shutdown.cancelled().await;
        Ok(())
    }
}
