//! The sender: consumes reminder commands, re-checks the invoices, renders and delivers reminders.
//!
//! The service's own work arrives with its issue; for now it runs the shared lifecycle:
//! configuration, logs, metrics, readiness against PostgreSQL and Kafka, graceful shutdown.

use relance_runtime::{BoxError, Service, ServiceContext, ServiceName};

/// The sender service.
pub struct Sender;

impl Service for Sender {
    const NAME: ServiceName = ServiceName::Sender;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        context.shutdown.cancelled().await;
        Ok(())
    }
}
