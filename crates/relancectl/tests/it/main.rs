//! relancectl against a real admin API (the scheduler's), on a real database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod approvals;
mod conformance;
mod hostile_ids;
mod policy;
mod tenancy;
