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
    let link_keys = repo_config_dir()
        .join("dev-link-keys")
        .to_string_lossy()
        .into_owned();
    let production_secrets = HashMap::from([
        ("RELANCE__SCHEDULER__ADMIN_TOKENS_FILE".to_string(), tokens),
        ("RELANCE__LINKS__SIGNING_KEYS_FILE".to_string(), link_keys),
    ]);
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

fn sender_error_with(env: &[(&str, &str)]) -> String {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    match Settings::load(
        &ConfigSource::with_env_vars(repo_config_dir(), "local", vars),
        ServiceName::Sender,
    ) {
        Ok(_) => panic!("{env:?} must be rejected for the sender"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn sender_providers_and_identities_are_validated_by_key() {
    let message = sender_error_with(&[("RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER", "postmark")]);
    assert!(
        message.contains("sender.identity.email_provider = \"postmark\": must name a [sender.providers.<name>] table"),
        "{message}"
    );
    let message = sender_error_with(&[
        ("RELANCE__SENDER__PROVIDERS__POSTMARK__KIND", "postmark"),
        ("RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN", ""),
        ("RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER", "postmark"),
    ]);
    assert!(
        message.contains("sender.providers.postmark.server_token = [redacted]: must be set"),
        "{message}"
    );
    let message = sender_error_with(&[
        ("RELANCE__SENDER__PROVIDERS__SMS__KIND", "twilio"),
        ("RELANCE__SENDER__PROVIDERS__SMS__ACCOUNT_SID", "AC1"),
        ("RELANCE__SENDER__PROVIDERS__SMS__AUTH_TOKEN", "secret"),
        ("RELANCE__SENDER__PROVIDERS__SMS__FROM", "+33700000000"),
        ("RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER", "sms"),
    ]);
    assert!(message.contains("sender.identity.email_provider = \"sms\": is a twilio provider, which does not send email"), "{message}");
    let message = sender_error_with(&[(
        "RELANCE__SENDER__TENANTS__ACME__FROM_EMAIL",
        "not an address",
    )]);
    assert!(
        message.contains(
            "sender.tenants.acme.from_email = \"not an address\": must be an email address"
        ),
        "{message}"
    );
    let message = sender_error_with(&[("RELANCE__LINKS__SIGNING_KEYS_FILE", "/nonexistent/keys")]);
    assert!(
        message.contains("links.signing_keys_file = \"/nonexistent/keys\": cannot be read"),
        "{message}"
    );
    let message = sender_error_with(&[("RELANCE__LINKS__PUBLIC_BASE_URL", "pay.example.com")]);
    assert!(
        message.contains("links.public_base_url = \"pay.example.com\""),
        "{message}"
    );
}

#[test]
fn tenants_inherit_the_default_identity() {
    let vars: HashMap<String, String> = HashMap::from([
        (
            "RELANCE__SENDER__TENANTS__ACME__COMPANY_NAME".to_string(),
            "Acme".to_string(),
        ),
        (
            "RELANCE__SENDER__TENANTS__ACME__TEMPLATE_SET".to_string(),
            "acme-v2".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SMS__KIND".to_string(),
            "twilio".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SMS__ACCOUNT_SID".to_string(),
            "AC1".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SMS__AUTH_TOKEN".to_string(),
            "0042".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SMS__FROM".to_string(),
            "+33700000000".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SMS__TIMEOUT_MS".to_string(),
            "2500".to_string(),
        ),
    ]);
    let settings = Settings::load(
        &ConfigSource::with_env_vars(repo_config_dir(), "local", vars),
        ServiceName::Sender,
    )
    .expect("valid");
    let acme = settings.sender.identity_of("acme");
    assert_eq!(acme.company_name, "Acme");
    assert_eq!(acme.template_set, "acme-v2");
    assert_eq!(acme.from_email, settings.sender.identity.from_email);
    // Environment values stay text unless the setting is a number: a phone number keeps its
    // plus, a token its leading zeros.
    let sms = &settings.sender.providers["sms"];
    assert_eq!(sms.from, "+33700000000");
    assert_eq!(
        sms.auth_token
            .as_ref()
            .map(|token| token.expose_secret().to_string())
            .as_deref(),
        Some("0042")
    );
    assert_eq!(sms.timeout_ms, 2500);
    let other = settings.sender.identity_of("globex");
    assert_eq!(other.company_name, settings.sender.identity.company_name);
    assert_eq!(other.template_set, "globex");
}

fn tracker_error_with(env: &[(&str, &str)]) -> String {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    match Settings::load(
        &ConfigSource::with_env_vars(repo_config_dir(), "local", vars),
        ServiceName::Tracker,
    ) {
        Ok(_) => panic!("{env:?} must be rejected for the tracker"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn tracker_settings_are_validated_by_key() {
    let message = tracker_error_with(&[("RELANCE__TRACKER__PAGES_DIR", "/nonexistent")]);
    assert!(
        message.contains("tracker.pages_dir = \"/nonexistent\""),
        "{message}"
    );
    let message = tracker_error_with(&[("RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME", "hooks")]);
    assert!(
        message.contains("tracker.postmark_webhook_username = \"hooks\": set both"),
        "{message}"
    );
    let message =
        tracker_error_with(&[("RELANCE__TRACKER__SENDGRID_WEBHOOK_PUBLIC_KEY", "not a key")]);
    assert!(
        message.contains("tracker.sendgrid_webhook_public_key"),
        "{message}"
    );
    let message = tracker_error_with(&[("RELANCE__TRACKER__ATTRIBUTION_MODEL", "u_shaped")]);
    assert!(
        message.contains("tracker.attribution_model")
            && message.contains("last_touch, first_touch, linear"),
        "{message}"
    );
    let message = tracker_error_with(&[("RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS", "everywhere")]);
    assert!(
        message.contains("tracker.public_listen_address = \"everywhere\""),
        "{message}"
    );
    let message = tracker_error_with(&[("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "0")]);
    assert!(
        message.contains("tracker.rate_limit_per_minute = 0"),
        "{message}"
    );
}

#[test]
fn a_lease_that_cannot_cover_a_providers_calls_is_rejected_naming_both_keys() {
    let postmark = [
        ("RELANCE__SENDER__PROVIDERS__POSTMARK__KIND", "postmark"),
        (
            "RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN",
            "token",
        ),
        ("RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS", "120000"),
    ];
    let mut env = postmark.to_vec();
    env.push(("RELANCE__SENDER__LEASE_MS", "1000"));
    let message = sender_error_with(&env);
    assert!(message.contains("sender.lease_ms = 1000"), "{message}");
    assert!(
        message.contains("sender.providers.postmark.timeout_ms (120000)"),
        "{message}"
    );
    let mut env = postmark.to_vec();
    env.push(("RELANCE__SENDER__LEASE_MS", "242000"));
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    Settings::load(
        &ConfigSource::with_env_vars(repo_config_dir(), "local", vars),
        ServiceName::Sender,
    )
    .expect("a lease of twice (timeout + 1 s) is enough");
}

#[test]
fn a_provider_concurrency_and_the_reconciliation_escalation_are_checked() {
    let message = sender_error_with(&[("RELANCE__SENDER__PROVIDERS__FILE__CONCURRENCY", "0")]);
    assert!(
        message.contains("sender.providers.file.concurrency = 0: must be between 1 and 100"),
        "{message}"
    );
    let message = sender_error_with(&[("RELANCE__SENDER__RECONCILE_ESCALATE_AFTER_MS", "10")]);
    assert!(
        message.contains("sender.reconcile_escalate_after_ms = 10"),
        "{message}"
    );
}

#[test]
fn payment_hosts_come_from_a_list_or_one_comma_separated_variable() {
    let settings = load_with(
        "local",
        &[
            (
                "RELANCE__SENDER__IDENTITY__PAYMENT_HOSTS",
                "pay.acme.example, *.stripe.example",
            ),
            (
                "RELANCE__SENDER__TENANTS__GLOBEX__PAYMENT_HOSTS",
                "pay.globex.example",
            ),
        ],
    )
    .unwrap();
    let hosts = settings.sender.payment_hosts();
    assert_eq!(hosts.default, ["pay.acme.example", "*.stripe.example"]);
    assert_eq!(hosts.tenants["globex"], ["pay.globex.example"]);
    assert!(hosts
        .check("globex", "https://pay.globex.example/i/1")
        .is_ok());
    assert!(hosts
        .check("globex", "https://pay.acme.example/i/1")
        .is_err());
    assert!(hosts.check("acme", "https://a.stripe.example/c").is_ok());
    let error = error_with(&[("RELANCE__SENDER__IDENTITY__PAYMENT_HOSTS", "pay example")]);
    assert!(error.contains("sender.identity.payment_hosts"), "{error}");
}
