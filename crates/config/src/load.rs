//! Reading and merging the configuration layers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};

use crate::sections::Settings;

/// The compiled-in first layer: every key with its default.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of environment overrides: `RELANCE__KAFKA__BOOTSTRAP_SERVERS`.
pub const ENV_PREFIX: &str = "RELANCE";

/// Where configuration comes from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// Folder holding `<environment>.toml`.
    pub config_dir: PathBuf,
    /// Environment name: selects `<environment>.toml`.
    pub environment: String,
    /// Environment variables to read overrides from; `None` reads the process environment.
    pub env_vars: Option<HashMap<String, String>>,
}

impl ConfigSource {
    /// The process's own source: `RELANCE_CONFIG_DIR` (default `config`) and `RELANCE_ENV`
    /// (default `local`), overridable by the caller's command line.
    pub fn from_process(config_dir: Option<PathBuf>, environment: Option<String>) -> Self {
        let config_dir = config_dir
            .or_else(|| std::env::var_os("RELANCE_CONFIG_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config"));
        let environment = environment
            .or_else(|| std::env::var("RELANCE_ENV").ok())
            .unwrap_or_else(|| "local".to_string());
        Self {
            config_dir,
            environment,
            env_vars: None,
        }
    }

    /// A source with explicit environment variables, for tests.
    pub fn with_env_vars(
        config_dir: impl Into<PathBuf>,
        environment: impl Into<String>,
        env_vars: HashMap<String, String>,
    ) -> Self {
        Self {
            config_dir: config_dir.into(),
            environment: environment.into(),
            env_vars: Some(env_vars),
        }
    }

    /// The environment file this source reads.
    pub fn environment_file(&self) -> PathBuf {
        self.config_dir.join(format!("{}.toml", self.environment))
    }
}

/// Why the layers could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The environment name would escape the configuration folder or is empty.
    #[error("RELANCE_ENV = {0:?}: must be a plain name such as local, test or production")]
    BadEnvironmentName(String),
    /// The environment file does not exist.
    #[error("configuration file {} not found (RELANCE_ENV = {environment:?}, folder from RELANCE_CONFIG_DIR or --config-dir)", path.display())]
    MissingEnvironmentFile { path: PathBuf, environment: String },
    /// A layer is malformed.
    #[error("reading configuration: {0}")]
    Read(#[source] config::ConfigError),
    /// A value has the wrong type or a key is unknown.
    #[error("configuration key {key}: {message}")]
    Value { key: String, message: String },
}

pub(crate) fn load(source: &ConfigSource) -> Result<Settings, LoadError> {
    let environment = source.environment.as_str();
    if environment.is_empty()
        || !environment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(LoadError::BadEnvironmentName(environment.to_string()));
    }
    let environment_file = source.environment_file();
    if !Path::new(&environment_file).is_file() {
        return Err(LoadError::MissingEnvironmentFile {
            path: environment_file,
            environment: environment.to_string(),
        });
    }
    let overrides = Environment::with_prefix(ENV_PREFIX)
        // Set both separators: when prefix_separator is unset, the config crate falls back to
        // `separator`, and env names that were meant to match silently would not.
        .prefix_separator("__")
        .separator("__")
        // Values stay text: typed settings parse it themselves, and text settings keep what
        // was written ("+33700000000" and "007" are not numbers).
        .try_parsing(false)
        .source(source.env_vars.clone());
    let merged = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .add_source(File::from(environment_file).format(FileFormat::Toml))
        .add_source(overrides)
        .build()
        .map_err(LoadError::Read)?;
    let mut settings: Settings = serde_path_to_error::deserialize(merged).map_err(|error| {
        let key = error.path().to_string();
        LoadError::Value {
            key,
            message: error.into_inner().to_string(),
        }
    })?;
    // Files named in configuration are found next to it, wherever the process runs from.
    let relative_to_config = |path: &mut String| {
        if !path.is_empty() && Path::new(path.as_str()).is_relative() {
            *path = source
                .config_dir
                .join(path.as_str())
                .to_string_lossy()
                .into_owned();
        }
    };
    relative_to_config(&mut settings.scheduler.admin_tokens_file);
    relative_to_config(&mut settings.scheduler.policies_dir);
    relative_to_config(&mut settings.sender.templates_dir);
    relative_to_config(&mut settings.tracker.pages_dir);
    relative_to_config(&mut settings.tracker.policies_dir);
    relative_to_config(&mut settings.links.signing_keys_file);
    for provider in settings.sender.providers.values_mut() {
        if provider.kind == crate::sections::ProviderKind::File {
            relative_to_config(&mut provider.folder);
        }
    }
    Ok(settings)
}
