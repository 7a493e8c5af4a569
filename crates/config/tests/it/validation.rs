use crate::error_with;

/// Asserts that `env` is rejected and the message names `key` and `value`.
fn rejects(env: &[(&str, &str)], key: &str, value: &str) {
    let message = error_with(env);
    assert!(
        message.contains(key),
        "message does not name {key}: {message}"
    );
    assert!(
        message.contains(value),
        "message does not show {value}: {message}"
    );
}

#[test]
fn an_out_of_range_number_is_rejected() {
    rejects(
        &[("RELANCE__KAFKA__SESSION_TIMEOUT_MS", "500")],
        "kafka.session_timeout_ms",
        "500",
    );
    rejects(
        &[("RELANCE__DATABASE__MAX_CONNECTIONS", "0")],
        "database.max_connections",
        "0",
    );
    rejects(
        &[("RELANCE__INGESTOR__BATCH_MAX_MESSAGES", "0")],
        "ingestor.batch_max_messages",
        "0",
    );
}

#[test]
fn a_malformed_address_is_rejected() {
    rejects(
        &[("RELANCE__INGESTOR__OPS_LISTEN_ADDRESS", "everywhere")],
        "ingestor.ops_listen_address",
        "everywhere",
    );
    rejects(
        &[("RELANCE__KAFKA__BOOTSTRAP_SERVERS", "broker-without-port")],
        "kafka.bootstrap_servers",
        "broker-without-port",
    );
}

#[test]
fn an_empty_required_text_is_rejected() {
    rejects(
        &[("RELANCE__DATABASE__HOST", " ")],
        "database.host",
        "\" \"",
    );
    rejects(
        &[("RELANCE__INGESTOR__GROUP_ID", " ")],
        "ingestor.group_id",
        "\" \"",
    );
}

#[test]
fn an_illegal_or_duplicate_topic_name_is_rejected() {
    rejects(
        &[("RELANCE__KAFKA__TOPICS__DLQ", "dead letters")],
        "kafka.topics.dlq",
        "dead letters",
    );
    rejects(
        &[("RELANCE__KAFKA__TOPICS__DLQ", "relance.events")],
        "kafka.topics.dlq",
        "relance.events",
    );
}

#[test]
fn an_invalid_log_filter_is_rejected() {
    rejects(
        &[("RELANCE__TELEMETRY__LOG_LEVEL", "loud")],
        "telemetry.log_level",
        "loud",
    );
}

#[test]
fn inconsistent_values_are_rejected_naming_both_keys() {
    let message = error_with(&[("RELANCE__KAFKA__HEARTBEAT_INTERVAL_MS", "5000")]);
    assert!(
        message.contains("kafka.heartbeat_interval_ms = 5000"),
        "{message}"
    );
    assert!(message.contains("kafka.session_timeout_ms"), "{message}");

    let message = error_with(&[("RELANCE__RUNTIME__SHUTDOWN_TIMEOUT_MS", "7000")]);
    assert!(
        message.contains("runtime.shutdown_timeout_ms = 7000"),
        "{message}"
    );
    assert!(
        message.contains("kafka.session_timeout_ms (6000)"),
        "{message}"
    );

    let message = error_with(&[("RELANCE__DATABASE__MIN_CONNECTIONS", "50")]);
    assert!(
        message.contains("database.min_connections = 50"),
        "{message}"
    );
}

#[test]
fn sasl_without_credentials_is_rejected_and_the_secret_is_not_shown() {
    let message = error_with(&[
        ("RELANCE__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
        ("RELANCE__KAFKA__SASL_MECHANISM", "GSSAPI"),
    ]);
    assert!(
        message.contains("kafka.sasl_mechanism = \"GSSAPI\""),
        "{message}"
    );
    assert!(message.contains("kafka.sasl_username"), "{message}");
    assert!(
        message.contains("kafka.sasl_password = [redacted]"),
        "{message}"
    );
}

#[test]
fn a_tls_file_that_does_not_exist_is_rejected() {
    rejects(
        &[
            ("RELANCE__KAFKA__SECURITY_PROTOCOL", "ssl"),
            ("RELANCE__KAFKA__SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ],
        "kafka.ssl_ca_location",
        "/nonexistent/ca.pem",
    );
}

#[test]
fn every_invalid_value_is_reported_at_once() {
    let message = error_with(&[
        ("RELANCE__KAFKA__SESSION_TIMEOUT_MS", "500"),
        ("RELANCE__DATABASE__MAX_CONNECTIONS", "0"),
    ]);
    assert!(message.contains("kafka.session_timeout_ms"), "{message}");
    assert!(message.contains("database.max_connections"), "{message}");
}

#[test]
fn a_passthrough_property_cannot_override_a_typed_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        crate::repo_config_dir().join("local.toml"),
        dir.path().join("local.toml"),
    )
    .expect("copy");
    let mut text = std::fs::read_to_string(dir.path().join("local.toml")).expect("read");
    text.push_str("\n[kafka.librdkafka]\n\"enable.auto.commit\" = \"true\"\n\"socket.keepalive.enable\" = \"true\"\n");
    std::fs::write(dir.path().join("local.toml"), text).expect("write");
    let error = relance_config::Settings::load(
        &relance_config::ConfigSource::with_env_vars(dir.path(), "local", Default::default()),
        relance_config::ServiceName::Ingestor,
    )
    .expect_err("conflicting passthrough");
    let message = error.to_string();
    assert!(
        message.contains("kafka.librdkafka.\"enable.auto.commit\""),
        "{message}"
    );
    assert!(
        !message.contains("socket.keepalive.enable"),
        "an unrelated property is fine: {message}"
    );
}

#[test]
fn scheduler_files_are_checked_and_relative_paths_follow_the_config_folder() {
    let load = |env: &[(&str, &str)]| {
        let vars = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        relance_config::Settings::load(
            &relance_config::ConfigSource::with_env_vars(crate::repo_config_dir(), "local", vars),
            relance_config::ServiceName::Scheduler,
        )
    };
    let settings = load(&[]).expect("local scheduler settings");
    assert!(
        settings.scheduler.policies_dir.ends_with("config/policies"),
        "{}",
        settings.scheduler.policies_dir
    );
    let message = load(&[("RELANCE__SCHEDULER__ADMIN_TOKENS_FILE", "missing-tokens")])
        .unwrap_err()
        .to_string();
    assert!(message.contains("scheduler.admin_tokens_file"), "{message}");
    let message = load(&[("RELANCE__SCHEDULER__POLICIES_DIR", "/nonexistent")])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("scheduler.policies_dir = \"/nonexistent\""),
        "{message}"
    );
}

#[test]
fn the_clock_is_checked_for_every_service() {
    rejects(
        &[("RELANCE__RUNTIME__CLOCK__SPEED", "0.5")],
        "runtime.clock.speed",
        "0.5",
    );
    rejects(
        &[("RELANCE__RUNTIME__CLOCK__START", "next tuesday")],
        "runtime.clock.start",
        "next tuesday",
    );
    rejects(
        &[("RELANCE__RUNTIME__CLOCK__EPOCH", "2026-13-01")],
        "runtime.clock.epoch",
        "2026-13-01",
    );
    crate::load_with(
        "local",
        &[
            ("RELANCE__RUNTIME__CLOCK__SPEED", "3600"),
            ("RELANCE__RUNTIME__CLOCK__START", "2026-09-01T00:00:00Z"),
            (
                "RELANCE__RUNTIME__CLOCK__EPOCH",
                "2026-11-30T10:00:00+01:00",
            ),
        ],
    )
    .expect("a simulated clock");
}

#[test]
fn admin_tokens_files_hold_digests_roles_and_tenants_never_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest = "sha256:45c238e1da47f97f486a75e0b10de3014301ec3784b0287ee2dbe9015610ee25";
    for (content, expected) in [
        (
            "marie dev-only-admin-token-not-for-production\n",
            "no longer read",
        ),
        ("just-one-word\n", "line 1"),
        (&*format!("marie boss * {digest}\n"), "role \"boss\""),
        (
            &*format!("marie operator acme,,globex {digest}\n"),
            "tenant \"\"",
        ),
        (
            "marie operator * dev-only-admin-token-not-for-production\n",
            "not in clear",
        ),
        (
            &*format!("marie operator * {digest}\nmarie read_only * {digest}\n"),
            "listed twice",
        ),
    ] {
        let path = dir.path().join("tokens");
        std::fs::write(&path, content).expect("write");
        let error = relance_config::read_admin_tokens(&path.to_string_lossy()).unwrap_err();
        assert!(error.contains(expected), "{content:?}: {error}");
    }
    let tokens = relance_config::read_admin_tokens(
        &crate::repo_config_dir()
            .join("dev-admin-tokens")
            .to_string_lossy(),
    )
    .expect("dev tokens");
    assert_eq!(tokens[0].holder, "dev-operator");
    assert!(tokens[0].matches("dev-only-admin-token-not-for-production"));
    assert!(
        !std::fs::read_to_string(crate::repo_config_dir().join("dev-admin-tokens"))
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .any(|line| line.contains("dev-only"))
    );
}

#[test]
fn planning_workers_need_a_connection_each_and_two_more() {
    let load = |env: &[(&str, &str)]| {
        let vars = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        relance_config::Settings::load(
            &relance_config::ConfigSource::with_env_vars(crate::repo_config_dir(), "local", vars),
            relance_config::ServiceName::Scheduler,
        )
    };
    let settings = load(&[]).expect("the defaults hold");
    assert_eq!(settings.scheduler.planning_workers, 4);
    let message = load(&[
        ("RELANCE__SCHEDULER__PLANNING_WORKERS", "9"),
        ("RELANCE__DATABASE__MAX_CONNECTIONS", "10"),
    ])
    .expect_err("9 workers, the relay and the admin API need 11 connections")
    .to_string();
    assert!(
        message.contains("scheduler.planning_workers = 9"),
        "{message}"
    );
    assert!(
        message.contains("database.max_connections (10)"),
        "{message}"
    );
    let message = load(&[("RELANCE__SCHEDULER__PLANNING_WORKERS", "0")])
        .expect_err("at least one")
        .to_string();
    assert!(
        message.contains("scheduler.planning_workers = 0"),
        "{message}"
    );
}

#[test]
fn concurrent_ingest_batches_need_a_connection_each_and_one_more() {
    let load = |env: &[(&str, &str)]| {
        let vars = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        relance_config::Settings::load(
            &relance_config::ConfigSource::with_env_vars(crate::repo_config_dir(), "local", vars),
            relance_config::ServiceName::Ingestor,
        )
    };
    let settings = load(&[]).expect("the defaults hold");
    assert_eq!(settings.ingestor.concurrent_batches, 2);
    assert_eq!(settings.ingestor.batch_max_wait_ms, 5);
    let message = load(&[
        ("RELANCE__INGESTOR__CONCURRENT_BATCHES", "10"),
        ("RELANCE__DATABASE__MAX_CONNECTIONS", "10"),
    ])
    .expect_err("10 batches and the relay need 11 connections")
    .to_string();
    assert!(
        message.contains("ingestor.concurrent_batches = 10"),
        "{message}"
    );
    assert!(
        message.contains("database.max_connections (10)"),
        "{message}"
    );
    for refused in ["0", "17"] {
        let message = load(&[("RELANCE__INGESTOR__CONCURRENT_BATCHES", refused)])
            .expect_err("from 1 to 16")
            .to_string();
        assert!(
            message.contains(&format!("ingestor.concurrent_batches = {refused}")),
            "{message}"
        );
    }
}
