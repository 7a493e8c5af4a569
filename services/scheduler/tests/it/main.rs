//! The scheduler against the real broker and database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // Test code.

mod helpers;
mod payments;
mod replicas;
mod simulation;

mod lifecycle {
    relance_testkit::service_lifecycle_tests!(
        env!("CARGO_BIN_EXE_scheduler"),
        relance_runtime::ServiceName::Scheduler
    );
}
