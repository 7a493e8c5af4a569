//! librdkafka configuration built from [`KafkaSettings`].

use rdkafka::ClientConfig;
use relance_config::KafkaSettings;
use secrecy::ExposeSecret;

/// What a client is for; part of its `client.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Consumer,
    Producer,
    Admin,
}

impl ClientRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Producer => "producer",
            Self::Admin => "admin",
        }
    }
}

/// Settings shared by every client: brokers, identity, security, then the passthrough
/// properties (validated at start-up not to contradict the typed ones).
pub(crate) fn base_config(
    settings: &KafkaSettings,
    service: &str,
    role: ClientRole,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set(
            "client.id",
            format!("{}-{service}-{}", settings.client_id, role.as_str()),
        )
        .set(
            "security.protocol",
            settings.security_protocol.as_librdkafka(),
        )
        .set(
            "socket.timeout.ms",
            settings.metadata_timeout_ms.max(10_000).to_string(),
        )
        .set("log.connection.close", "false");
    if settings.security_protocol.uses_sasl() {
        config
            .set("sasl.mechanism", &settings.sasl_mechanism)
            .set("sasl.username", &settings.sasl_username)
            .set("sasl.password", settings.sasl_password.expose_secret());
    }
    if settings.security_protocol.uses_tls() {
        for (property, value) in [
            ("ssl.ca.location", &settings.ssl_ca_location),
            (
                "ssl.certificate.location",
                &settings.ssl_certificate_location,
            ),
            ("ssl.key.location", &settings.ssl_key_location),
        ] {
            if !value.is_empty() {
                config.set(property, value);
            }
        }
        let key_password = settings.ssl_key_password.expose_secret();
        if !key_password.is_empty() {
            config.set("ssl.key.password", key_password);
        }
    }
    config
}

fn apply_passthrough(config: &mut ClientConfig, settings: &KafkaSettings) {
    for (property, value) in &settings.librdkafka {
        config.set(property, value);
    }
}

/// A consumer in `group_id` that never commits by itself: offsets are committed explicitly,
/// after the records below them are durably processed.
pub fn consumer_config(settings: &KafkaSettings, service: &str, group_id: &str) -> ClientConfig {
    let mut config = base_config(settings, service, ClientRole::Consumer);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", settings.auto_offset_reset.as_str())
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            settings.heartbeat_interval_ms.to_string(),
        )
        .set(
            "max.poll.interval.ms",
            settings.max_poll_interval_ms.to_string(),
        )
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        .set(
            "queued.min.messages",
            settings.consumer_prefetch_messages.to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            settings.consumer_prefetch_kbytes.to_string(),
        )
        .set(
            "fetch.queue.backoff.ms",
            settings.consumer_fetch_backoff_ms.to_string(),
        )
        .set(
            "statistics.interval.ms",
            settings.statistics_interval_ms.to_string(),
        );
    apply_passthrough(&mut config, settings);
    config
}

/// An idempotent producer that waits for every in-sync replica: a record counts as sent only
/// when the broker has it durably, without duplicates on retry.
pub fn producer_config(settings: &KafkaSettings, service: &str) -> ClientConfig {
    let mut config = base_config(settings, service, ClientRole::Producer);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.to_string(),
        )
        .set("linger.ms", settings.linger_ms.to_string())
        .set("compression.codec", settings.compression.as_str());
    apply_passthrough(&mut config, settings);
    config
}

/// An admin client (topic creation).
pub(crate) fn admin_config(settings: &KafkaSettings, service: &str) -> ClientConfig {
    let mut config = base_config(settings, service, ClientRole::Admin);
    apply_passthrough(&mut config, settings);
    config
}
