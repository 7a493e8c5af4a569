//! PostgreSQL for relance: the connection pool built from settings, the migrations, and the
//! repositories (processed events, outbox, invoices, customers). This is the only crate that
//! speaks SQL.

use std::time::Duration;

use relance_config::{DatabaseSettings, SslMode};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::PgPool;

pub mod behaviour;
pub mod customers;
pub mod dead_letters;
pub mod deliveries;
pub mod erasure;
mod error;
pub mod invoices;
pub mod outbox;
pub mod processed;
pub mod retention;
pub mod scheduling;
pub mod tracking;

pub use error::StorageError;
pub use relance_domain::{scoped, Scoped};

/// The tenants and ids of `keys` as the two arrays a query unnests, sorted and without
/// repeats: rows are always locked in `(tenant, id)` order.
/// A stored `facts` column as read: its JSON text, decoded straight into the domain's type.
/// Through `serde_json::Value` every invoice first became a tree of maps (the scheduler's
/// largest use of memory at its peak, and a tenth of its CPU, by heaptrack and perf).
pub(crate) type RawFacts = sqlx::types::Json<Box<sqlx::types::JsonRawValue>>;

/// Decodes stored facts; unreadable ones name the record.
pub(crate) fn decode_facts<T: serde::de::DeserializeOwned>(
    what: &'static str,
    id: &str,
    facts: &RawFacts,
) -> Result<T, crate::error::StorageError> {
    serde_json::from_str(facts.0.get()).map_err(|source| crate::error::StorageError::Corrupt {
        what,
        id: id.to_string(),
        source,
    })
}

pub(crate) fn key_columns(keys: &[Scoped]) -> (Vec<String>, Vec<String>) {
    let mut sorted = keys.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.into_iter().unzip()
}

/// The migrations of `crates/storage/migrations`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connection options from settings; `application_name` shows in `pg_stat_activity`.
pub fn connect_options(settings: &DatabaseSettings, application_name: &str) -> PgConnectOptions {
    let ssl_mode = match settings.ssl_mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    };
    let mut options = PgConnectOptions::new()
        .host(&settings.host)
        .port(settings.port)
        .username(&settings.username)
        .database(&settings.database_name)
        .ssl_mode(ssl_mode)
        .application_name(application_name);
    let password = settings.password.expose_secret();
    if !password.is_empty() {
        options = options.password(password);
    }
    if !settings.ssl_root_cert.is_empty() {
        options = options.ssl_root_cert(&settings.ssl_root_cert);
    }
    if settings.statement_timeout_ms > 0 {
        options = options.options([(
            "statement_timeout",
            settings.statement_timeout_ms.to_string(),
        )]);
    }
    options
}

/// A pool that connects lazily: a service starts (and reports not ready) while the database is
/// unreachable, and recovers by itself when it comes back.
pub fn lazy_pool(settings: &DatabaseSettings, application_name: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // Broken connections (after a database restart) are detected before use.
        .test_before_acquire(true)
        .connect_lazy_with(connect_options(settings, application_name))
}

/// Applies pending migrations. Safe to run from several replicas at once: sqlx holds an
/// advisory lock while migrating, and already applied migrations are skipped.
///
/// # Errors
/// [`StorageError::Migrate`] when the database is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), StorageError> {
    MIGRATOR.run(pool).await.map_err(StorageError::Migrate)
}

/// Checks that the database answers a query now.
///
/// # Errors
/// [`StorageError::Unreachable`] otherwise.
pub async fn ping(pool: &PgPool) -> Result<(), StorageError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(StorageError::Unreachable)
}
