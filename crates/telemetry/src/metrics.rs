//! The Prometheus registry of a service and the metrics every service has.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// Why a metric could not be registered or encoded.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// A service's metrics registry. Each service has its own (not the process-global default),
/// so services spawned side by side in one test process do not share counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    readiness: IntGaugeVec,
}

impl Metrics {
    /// A registry with the process collector (CPU, memory, file descriptors), the build info
    /// gauge `relance_build_info{service, version, git_sha}` and the readiness gauge
    /// `relance_readiness_check_up{check}`.
    ///
    /// # Errors
    /// [`MetricsError`] if a standard metric cannot be registered.
    pub fn new(service: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "relance_build_info",
                "Always 1; its labels say which build of which relance service this is.",
            ),
            &["service", "version", "git_sha"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[
                service,
                env!("CARGO_PKG_VERSION"),
                option_env!("RELANCE_GIT_SHA").unwrap_or("unknown"),
            ])
            .set(1);
        let readiness = IntGaugeVec::new(
            Opts::new(
                "relance_readiness_check_up",
                "1 when the dependency passed its last readiness check, 0 when it failed.",
            ),
            &["check"],
        )?;
        registry.register(Box::new(readiness.clone()))?;
        Ok(Self {
            registry,
            readiness,
        })
    }

    /// The registry, to register a service's own metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn record_readiness(&self, check: &str, up: bool) {
        self.readiness
            .with_label_values(&[check])
            .set(i64::from(up));
    }

    /// Everything registered, in the Prometheus text format.
    ///
    /// # Errors
    /// [`MetricsError`] if a collector fails.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}
