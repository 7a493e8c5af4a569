//! The command line of every service binary and its `main`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relance_config::{ConfigSource, Settings};

use crate::application::{Application, Service};

/// Command line shared by the four service binaries.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "A relance service. Configuration: docs/configuration.md."
)]
pub struct Cli {
    /// Folder of the environment configuration files.
    #[arg(
        long,
        env = "RELANCE_CONFIG_DIR",
        default_value = "config",
        global = true
    )]
    pub config_dir: PathBuf,
    /// Environment: selects <config-dir>/<env>.toml.
    #[arg(
        long = "env",
        env = "RELANCE_ENV",
        default_value = "local",
        global = true
    )]
    pub environment: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Validate the configuration, then exit.
    CheckConfig,
}

/// The `main` of a service binary: exit code 0 after a clean stop, 1 when the service failed,
/// 2 when the configuration is invalid.
pub async fn main<S: Service>() -> ExitCode {
    let cli = Cli::parse();
    let service = S::NAME;
    let source = ConfigSource::from_process(Some(cli.config_dir), Some(cli.environment));
    let settings = match Settings::load(&source, service) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CheckConfig = command {
        println!(
            "{service}: configuration is valid ({})",
            source.environment_file().display()
        );
        return ExitCode::SUCCESS;
    }
    // The exporter's HTTP client blocks: it is built and stopped off the async workers.
    let telemetry_settings = settings.telemetry.clone();
    let installed = tokio::task::spawn_blocking(move || {
        relance_telemetry::init_logging(&telemetry_settings, service.as_str())
    })
    .await;
    let telemetry = match installed {
        Ok(Ok(telemetry)) => telemetry,
        Ok(Err(error)) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("{service}: setting up logs failed: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Migrate => migrate(&settings, service.as_str()).await,
        Command::Serve | Command::CheckConfig => serve::<S>(settings).await,
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, error.cause_chain = ?relance_telemetry::ErrorChain(error.as_ref()), "Service failed.");
            ExitCode::FAILURE
        }
    };
    if tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .is_err()
    {
        eprintln!("{service}: exporting the last traces failed");
    }
    code
}

type DynError = Box<dyn std::error::Error + Send + Sync>;

async fn migrate(settings: &Settings, service: &str) -> Result<(), DynError> {
    let pool =
        relance_storage::lazy_pool(&settings.database, &format!("relance-{service}-migrate"));
    relance_storage::migrate(&pool).await?;
    tracing::info!(database = %settings.database.database_name, "Migrations applied.");
    Ok(())
}

async fn serve<S: Service>(settings: Settings) -> Result<(), DynError> {
    tracing::info!(
        service = S::NAME.as_str(),
        version = env!("CARGO_PKG_VERSION"),
        "Starting."
    );
    let application = Application::<S>::build(settings).await?;
    let shutdown = application.shutdown_token();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        shutdown.cancel();
    });
    application.run_until_stopped().await?;
    Ok(())
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received."),
                    _ = terminate.recv() => tracing::info!("SIGTERM received."),
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "Cannot listen for SIGTERM; stopping on SIGINT only.");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
