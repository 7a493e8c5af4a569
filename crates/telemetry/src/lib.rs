//! Telemetry shared by relance services: structured logs, the Prometheus registry, and the
//! operational HTTP endpoints Kubernetes and Prometheus use (`/metrics`, `/healthz`,
//! `/readyz`), served on their own port, never next to public traffic.

mod errors;
mod logging;
mod metrics;
mod ops;

pub use errors::ErrorChain;
pub use logging::{init_logging, request_span, LoggingError, Telemetry};
pub use metrics::{Metrics, MetricsError};
pub use ops::{serve_ops, CheckFuture, OpsServer, Readiness, ReadinessCheck};
