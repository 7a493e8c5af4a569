use std::collections::HashMap;

use relance_config::{
    ConfigSource, LogFormat, SecurityProtocol, ServiceName, Settings, SettingsError,
};
use secrecy::ExposeSecret;

use crate::{error_with, load_with, repo_config_dir};

#[test]
fn every_shipped_environment_loads_and_validates_for_every_service() {
    // Production mounts its admin tokens from a secret; the development file stands in here.
    let tokens = repo_config_dir()
        .join("dev-admin-tokens")
        .to_string_lossy()
        .into_owned();
    let production_secrets =
        HashMap::from([("RELANCE__SCHEDULER__ADMIN_TOKENS_FILE".to_string(), tokens)]);
    for environment in ["local", "test", "production"] {
        for service in ServiceName::ALL {
            let env = if environment == "production" {
                production_secrets.clone()
            } else {
                HashMap::new()
            };
            let source = ConfigSource::with_env_vars(repo_config_dir(), environment, env);
            if let Err(error) = Settings::load(&source, service) {
                panic!("{environment} for {service}: {error}");
            }
        }
    }
}

#[test]
fn the_environment_file_overrides_the_defaults() {
    let local = load_with("local", &[]).expect("local loads");
    assert_eq!(local.kafka.session_timeout_ms, 6000);
    assert_eq!(local.telemetry.log_format, LogFormat::Pretty);
    let production = load_with("production", &[]).expect("production loads");
    assert_eq!(
        production.kafka.session_timeout_ms, 45000,
        "default.toml value"
    );
    assert_eq!(production.telemetry.log_format, LogFormat::Json);
}

#[test]
fn environment_variables_override_files_with_double_underscores() {
    let settings = load_with(
        "local",
        &[
            (
                "RELANCE__KAFKA__BOOTSTRAP_SERVERS",
                "broker-1:9092,broker-2:9092",
            ),
            ("RELANCE__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
            ("RELANCE__KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("RELANCE__KAFKA__SASL_USERNAME", "relance"),
            ("RELANCE__KAFKA__SASL_PASSWORD", "12345"),
            ("RELANCE__KAFKA__TOPICS__DLQ", "acme.relance.dlq"),
            ("RELANCE__DATABASE__PORT", "6543"),
            ("RELANCE__DATABASE__MIGRATE_ON_START", "false"),
            // A single underscore after the prefix is not relance's form and is ignored.
            ("RELANCE_DATABASE__HOST", "ignored.example"),
        ],
    )
    .expect("overrides load");
    assert_eq!(
        settings.kafka.bootstrap_servers,
        "broker-1:9092,broker-2:9092"
    );
    assert_eq!(settings.kafka.security_protocol, SecurityProtocol::SaslSsl);
    assert_eq!(
        settings.kafka.sasl_password.expose_secret(),
        "12345",
        "numeric-looking secrets stay text"
    );
    assert_eq!(settings.kafka.topics.dlq, "acme.relance.dlq");
    assert_eq!(settings.database.port, 6543);
    assert!(!settings.database.migrate_on_start);
    assert_eq!(settings.database.host, "127.0.0.1");
}

#[test]
fn secrets_are_not_printed_in_debug_output() {
    let settings = load_with(
        "local",
        &[("RELANCE__DATABASE__PASSWORD", "hunter2-secret")],
    )
    .expect("loads");
    assert!(!format!("{settings:?}").contains("hunter2-secret"));
}

#[test]
fn a_missing_environment_file_names_the_file() {
    let source = ConfigSource::with_env_vars(repo_config_dir(), "staging", HashMap::new());
    let error = Settings::load(&source, ServiceName::Ingestor).expect_err("no staging.toml");
    assert!(matches!(error, SettingsError::Load(_)));
    assert!(error.to_string().contains("staging.toml"), "{error}");
}

#[test]
fn an_environment_name_cannot_escape_the_config_folder() {
    let source = ConfigSource::with_env_vars(repo_config_dir(), "../secrets", HashMap::new());
    let error = Settings::load(&source, ServiceName::Ingestor).expect_err("bad name");
    assert!(error.to_string().contains("RELANCE_ENV"), "{error}");
}

#[test]
fn a_value_of_the_wrong_type_names_the_key_and_the_value() {
    let message = error_with(&[("RELANCE__KAFKA__SESSION_TIMEOUT_MS", "soon")]);
    assert!(message.contains("kafka.session_timeout_ms"), "{message}");
    assert!(message.contains("soon"), "{message}");
}

#[test]
fn a_negative_number_for_a_duration_names_the_key() {
    let message = error_with(&[("RELANCE__RUNTIME__SHUTDOWN_TIMEOUT_MS", "-5")]);
    assert!(message.contains("runtime.shutdown_timeout_ms"), "{message}");
    assert!(message.contains("-5"), "{message}");
}

#[test]
fn an_unknown_enumeration_value_names_the_key_the_value_and_the_choices() {
    let message = error_with(&[("RELANCE__TELEMETRY__LOG_FORMAT", "xml")]);
    assert!(message.contains("telemetry.log_format"), "{message}");
    assert!(message.contains("xml"), "{message}");
    assert!(
        message.contains("json") && message.contains("pretty"),
        "{message}"
    );
}

#[test]
fn an_unknown_key_from_the_environment_is_rejected_by_name() {
    let message = error_with(&[("RELANCE__KAFKA__SESION_TIMEOUT_MS", "6000")]);
    assert!(message.contains("sesion_timeout_ms"), "{message}");
    assert!(message.contains("kafka"), "{message}");
}

#[test]
fn an_unknown_key_or_malformed_file_is_rejected_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("typo.toml"), "[database]\nhots = \"db\"\n").expect("write");
    std::fs::write(dir.path().join("broken.toml"), "[database\nhost = \n").expect("write");
    let typo = Settings::load(
        &ConfigSource::with_env_vars(dir.path(), "typo", HashMap::new()),
        ServiceName::Ingestor,
    )
    .expect_err("unknown key");
    assert!(typo.to_string().contains("database.hots"), "{typo}");
    let broken = Settings::load(
        &ConfigSource::with_env_vars(dir.path(), "broken", HashMap::new()),
        ServiceName::Ingestor,
    )
    .expect_err("malformed");
    assert!(broken.to_string().contains("broken.toml"), "{broken}");
}
