//! The ingestor against the real broker and database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // Test code: a panic is a failed test.

mod bad_input;
mod binding;
mod crash;
mod helpers;
mod ingest;
mod outage;
mod simulator;
mod tenancy;

mod lifecycle {
    relance_testkit::service_lifecycle_tests!(
        env!("CARGO_BIN_EXE_ingestor"),
        relance_runtime::ServiceName::Ingestor
    );
}
