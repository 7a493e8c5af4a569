//! The lifecycle every relance service shares, so that each service binary is a few lines of
//! wiring: parse the command line, load and validate settings, set up logs and metrics, connect
//! to PostgreSQL and Kafka, serve `/metrics`, `/healthz` and `/readyz`, run the service's own
//! work, and stop cleanly on SIGTERM or SIGINT within the configured shutdown timeout.
//!
//! Commands of every service binary: `serve` (the default), `migrate` (apply database
//! migrations and exit) and `check-config` (validate settings and exit).

mod application;
mod checks;
mod cli;
mod clock;
mod outbox_relay;

pub use application::{application_name, Application, RuntimeError, Service, ServiceContext};
pub use cli::{main, Cli, Command};
pub use clock::{Clock, ManualClock, SimulatedClock, SystemClock};
pub use outbox_relay::{OutboxMetrics, OutboxRelay, PublishHealth};
pub use relance_config::ServiceName;

/// A boxed error, for services to report failures of their own work.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
