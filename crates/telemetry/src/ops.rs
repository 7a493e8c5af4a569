//! The operational HTTP endpoints.
//!
//! - `/healthz`: the process is alive and serving (liveness probe). It never looks at
//!   dependencies: restarting a pod does not bring a database back.
//! - `/readyz`: every readiness check passes right now, and the service is not shutting down
//!   (readiness probe). Checks run concurrently, each bounded by the readiness timeout.
//! - `/metrics`: the service's registry in the Prometheus text format.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What a readiness check returns: `Err` with a short reason when the dependency is not usable.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// A dependency the service needs to do its work (database, broker).
pub trait ReadinessCheck: Send + Sync {
    /// The check's name in `/readyz` and in `relance_readiness_check_up{check}`.
    fn name(&self) -> &'static str;
    /// Checks the dependency now.
    fn check(&self) -> CheckFuture;
}

/// The readiness of a service: its checks and whether it is draining.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    timeout: Duration,
    draining: Arc<AtomicBool>,
    metrics: Metrics,
}

impl Readiness {
    /// Readiness with no checks yet; each check may take at most `timeout`.
    pub fn new(metrics: Metrics, timeout: Duration) -> Self {
        Self {
            checks: Arc::new(Vec::new()),
            timeout,
            draining: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// Adds a check.
    #[must_use]
    pub fn with_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        Arc::make_mut(&mut self.checks).push(check);
        self
    }

    /// From now on the service reports not ready, so Kubernetes stops routing work to it
    /// while it finishes what it has.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every check and returns whether all passed, with a per-check report.
    pub async fn evaluate(&self) -> (bool, Value) {
        let mut handles = Vec::with_capacity(self.checks.len());
        for check in self.checks.iter() {
            let name = check.name();
            let future = check.check();
            let timeout = self.timeout;
            handles.push((
                name,
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, future).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                    }
                }),
            ));
        }
        let mut report = Map::new();
        let mut ready = true;
        for (name, handle) in handles {
            let result = handle
                .await
                .unwrap_or_else(|error| Err(format!("check failed: {error}")));
            self.metrics.record_readiness(name, result.is_ok());
            if let Err(reason) = &result {
                ready = false;
                tracing::warn!(check = name, reason = %reason, "Readiness check failed.");
            }
            report.insert(
                name.to_string(),
                match result {
                    Ok(()) => Value::from("ok"),
                    Err(reason) => Value::from(reason),
                },
            );
        }
        let draining = self.draining.load(Ordering::SeqCst);
        let body = json!({
            "status": if ready && !draining { "ready" } else if draining { "draining" } else { "not_ready" },
            "checks": report,
        });
        (ready && !draining, body)
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Metrics,
    readiness: Readiness,
}

/// A running operational server.
pub struct OpsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// The address it listens on (useful when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the server to stop (after the shutdown token is cancelled).
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn stopped(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// When the listener's address cannot be read.
pub fn serve_ops(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<OpsServer> {
    let local_addr = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .with_state(OpsState { metrics, readiness });
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok(OpsServer { local_addr, task })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let (ready, body) = state.readiness.evaluate().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_endpoint(State(state): State<OpsState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, "Encoding metrics failed.");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}
