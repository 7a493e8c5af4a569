//! Structured logs with `tracing`: JSON lines by default, human-readable lines on request; and
//! the same spans exported as traces over OTLP when `telemetry.otlp_endpoint` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use relance_config::{LogFormat, TelemetrySettings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("telemetry.log_level = {value:?}: {source}")]
    Filter {
        value: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("telemetry.otlp_endpoint = {endpoint:?}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] sends what is still buffered.
#[must_use = "dropping it stops exporting traces"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (at the end of `main`).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(error) = provider.shutdown() {
                eprintln!("exporting the last traces failed: {error}");
            }
        }
    }
}

fn tracer_provider(
    settings: &TelemetrySettings,
    service: &str,
) -> Result<SdkTracerProvider, LoggingError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.otlp_endpoint.clone())
        .with_timeout(std::time::Duration::from_secs(5))
        .with_headers(std::collections::HashMap::new())
        .build()
        .map_err(|error| LoggingError::Exporter {
            endpoint: settings.otlp_endpoint.clone(),
            reason: error.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("relance-{service}"))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.trace_sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Installs the process-wide subscriber: level filter and format from `settings`, writing to
/// standard output (what container runtimes collect), and the OTLP exporter of `service`'s
/// spans when `settings.otlp_endpoint` is set.
///
/// # Errors
/// [`LoggingError`] when the filter does not parse, the exporter cannot be built or a
/// subscriber is already installed.
pub fn init_logging(
    settings: &TelemetrySettings,
    service: &str,
) -> Result<Telemetry, LoggingError> {
    let filter = EnvFilter::builder()
        .parse(&settings.log_level)
        .map_err(|source| LoggingError::Filter {
            value: settings.log_level.clone(),
            source,
        })?;
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_target(true)
            .boxed(),
    };
    let traces = if settings.otlp_endpoint.is_empty() {
        None
    } else {
        Some(tracer_provider(settings, service)?)
    };
    let exported = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("relance")));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(exported)
        .try_init()
        .map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(Telemetry { traces })
}

/// Middleware: each HTTP request runs in a span named by its route's template (never the path
/// itself, which can carry a customer's link token), with its method and, once answered, its
/// status.
pub async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}
