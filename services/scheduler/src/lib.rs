//! The scheduler: applies the dunning policy to open invoices and publishes reminder commands and tasks.
//!
//! The service's own work arrives with its issue; for now it runs the shared lifecycle:
//! configuration, logs, metrics, readiness against PostgreSQL and Kafka, graceful shutdown.

use relance_runtime::{BoxError, Service, ServiceContext, ServiceName};

/// The scheduler service.
pub struct Scheduler;

impl Service for Scheduler {
    const NAME: ServiceName = ServiceName::Scheduler;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        context.shutdown.cancelled().await;
        Ok(())
    }
}
