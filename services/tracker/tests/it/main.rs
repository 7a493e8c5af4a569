//! The tracker binary as Kubernetes runs it, against the real broker and database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod browser;
mod helpers;
mod links;
mod webhooks;

mod lifecycle {
    relance_testkit::service_lifecycle_tests!(
        env!("CARGO_BIN_EXE_tracker"),
        relance_runtime::ServiceName::Tracker
    );
}
