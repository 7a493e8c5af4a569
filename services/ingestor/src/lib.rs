//! The ingestor: consumes invoice, payment and customer events from the billing topics and keeps the dunning state of every invoice and the profile of every customer in PostgreSQL.
//!
//! The service's own work arrives with its issue; for now it runs the shared lifecycle:
//! configuration, logs, metrics, readiness against PostgreSQL and Kafka, graceful shutdown.

use relance_runtime::{BoxError, Service, ServiceContext, ServiceName};

/// The ingestor service.
pub struct Ingestor;

impl Service for Ingestor {
    const NAME: ServiceName = ServiceName::Ingestor;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        context.shutdown.cancelled().await;
        Ok(())
    }
}
