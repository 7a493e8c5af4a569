//! The sender binary as Kubernetes runs it, against the real broker and database, with mock
//! providers speaking the documented APIs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod days;
mod delivery;
mod exactly_once;
mod failures;
mod helpers;

mod lifecycle {
    relance_testkit::service_lifecycle_tests!(
        env!("CARGO_BIN_EXE_sender"),
        relance_runtime::ServiceName::Sender
    );
}
