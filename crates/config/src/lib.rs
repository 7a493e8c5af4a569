//! Layered configuration for relance services.
//!
//! Layers, in order: `config/default.toml` (compiled into the binary, so every key always has
//! a value), `config/<RELANCE_ENV>.toml` (`local` by default) from the configuration folder,
//! then `RELANCE__<SECTION>__<KEY>` environment variables. The result is deserialised into
//! [`Settings`], which rejects unknown keys, then [`Settings::validate`] checks every value
//! and names the key and the value of each one that is wrong.

mod admin_tokens;
mod load;
mod sections;
mod validate;

pub use admin_tokens::{
    read_admin_tokens, token_line, AdminRole, AdminToken, TenantScope, MIN_TOKEN_LENGTH,
};
pub use load::{ConfigSource, LoadError, DEFAULT_TOML, ENV_PREFIX};
pub use sections::*;
pub use validate::{InvalidSetting, ServiceName};

/// Why settings could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A layer could not be read or a value has the wrong type.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Values were read but some are invalid.
    #[error("invalid configuration:\n{}", format_invalid(.0))]
    Invalid(Vec<InvalidSetting>),
}

fn format_invalid(errors: &[InvalidSetting]) -> String {
    errors
        .iter()
        .map(|error| format!("  - {error}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Settings {
    /// Loads the layers of `source` and validates what `service` uses.
    ///
    /// # Errors
    /// [`SettingsError::Load`] when a layer is unreadable or a value has the wrong type or an
    /// unknown key; [`SettingsError::Invalid`] listing every invalid value.
    pub fn load(source: &ConfigSource, service: ServiceName) -> Result<Self, SettingsError> {
        let settings = load::load(source)?;
        settings.validate(service).map_err(SettingsError::Invalid)?;
        Ok(settings)
    }
}
