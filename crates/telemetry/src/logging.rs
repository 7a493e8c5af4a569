//! Structured logs with `tracing`: JSON lines by default, human-readable lines on request.

use relance_config::{LogFormat, TelemetrySettings};
use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("telemetry.log_level = {value:?}: {source}")]
    Filter {
        value: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the process-wide subscriber: level filter and format from `settings`, writing to
/// standard output (what container runtimes collect).
///
/// # Errors
/// [`LoggingError`] when the filter does not parse or a subscriber is already installed.
pub fn init_logging(settings: &TelemetrySettings) -> Result<(), LoggingError> {
    let filter = EnvFilter::builder()
        .parse(&settings.log_level)
        .map_err(|source| LoggingError::Filter {
            value: settings.log_level.clone(),
            source,
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let installed = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_target(true).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)
}
