#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod docs;
mod loading;
mod validation;

use std::collections::HashMap;
use std::path::PathBuf;

use relance_config::{ConfigSource, ServiceName, Settings, SettingsError};

pub fn repo_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// Loads the repository's `environment` layer with `env` as the only environment variables.
pub fn load_with(environment: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    Settings::load(
        &ConfigSource::with_env_vars(repo_config_dir(), environment, vars),
        ServiceName::Ingestor,
    )
}

/// The error message of loading with `env`, which must fail.
pub fn error_with(env: &[(&str, &str)]) -> String {
    match load_with("local", env) {
        Ok(_) => panic!("{env:?} must be rejected"),
        Err(error) => error.to_string(),
    }
}
