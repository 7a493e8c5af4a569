//! The settings, section by section. Field docs repeat `config/default.toml`.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use crate::validate::ServiceName;

/// An enumeration read from text, whose error lists the accepted values.
macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The value as written in configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                match value.as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "{value:?} is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

/// Every setting of every relance service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub telemetry: TelemetrySettings,
    pub runtime: RuntimeSettings,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub ingestor: IngestorSettings,
    pub scheduler: SchedulerSettings,
    pub sender: SenderSettings,
    pub tracker: TrackerSettings,
    pub outbox: OutboxSettings,
}

impl Settings {
    /// Where `service` serves /metrics, /healthz and /readyz.
    pub fn ops_listen_address(&self, service: ServiceName) -> &str {
        match service {
            ServiceName::Ingestor => &self.ingestor.ops_listen_address,
            ServiceName::Scheduler => &self.scheduler.ops_listen_address,
            ServiceName::Sender => &self.sender.ops_listen_address,
            ServiceName::Tracker => &self.tracker.ops_listen_address,
        }
    }
}

/// `[telemetry]`: logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Log filter in tracing's EnvFilter syntax.
    pub log_level: String,
    /// `json` or `pretty`.
    pub log_format: LogFormat,
}

config_enum!(
    /// How logs are written.
    LogFormat {
        /// One JSON object a line.
        Json = "json",
        /// Human-readable lines.
        Pretty = "pretty",
    }
);

/// `[runtime]`: the service lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// How long a service may take to stop after SIGTERM or SIGINT.
    pub shutdown_timeout_ms: u64,
    /// How long /readyz waits for PostgreSQL and the broker.
    pub readiness_timeout_ms: u64,
}

/// `[database]`: PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Empty means no password.
    pub password: SecretString,
    pub database_name: String,
    pub ssl_mode: SslMode,
    /// CA certificate file for verify-ca and verify-full; empty uses the system roots.
    pub ssl_root_cert: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    /// 0 disables the limit.
    pub statement_timeout_ms: u64,
    /// Apply pending migrations when a service starts.
    pub migrate_on_start: bool,
}

config_enum!(
    /// TLS to PostgreSQL, with libpq's names.
    SslMode {
        Disable = "disable",
        Prefer = "prefer",
        Require = "require",
        VerifyCa = "verify-ca",
        VerifyFull = "verify-full",
    }
);

/// `[kafka]`: the brokers and how every client talks to them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated host:port list.
    pub bootstrap_servers: String,
    /// Prefix of every client.id.
    pub client_id: String,
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; empty without SASL.
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: SecretString,
    pub ssl_ca_location: String,
    pub ssl_certificate_location: String,
    pub ssl_key_location: String,
    pub ssl_key_password: SecretString,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub max_poll_interval_ms: u64,
    pub fetch_wait_max_ms: u64,
    pub auto_offset_reset: AutoOffsetReset,
    pub message_timeout_ms: u64,
    pub linger_ms: u64,
    pub compression: Compression,
    pub metadata_timeout_ms: u64,
    /// How often clients report statistics (consumer lag); 0 turns them off.
    pub statistics_interval_ms: u64,
    /// Any other librdkafka property, applied last.
    pub librdkafka: BTreeMap<String, String>,
    pub topics: TopicSettings,
}

config_enum!(
    /// How clients connect to the brokers, with librdkafka's names.
    SecurityProtocol {
        Plaintext = "plaintext",
        Ssl = "ssl",
        SaslPlaintext = "sasl_plaintext",
        SaslSsl = "sasl_ssl",
    }
);

impl SecurityProtocol {
    /// librdkafka's value for `security.protocol`.
    pub fn as_librdkafka(self) -> &'static str {
        self.as_str()
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether the protocol encrypts with TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

config_enum!(
    /// Where a consumer group without a committed offset starts, with librdkafka's names.
    AutoOffsetReset {
        Earliest = "earliest",
        Latest = "latest",
    }
);

config_enum!(
    /// Compression of produced records, with librdkafka's names.
    Compression {
        None = "none",
        Gzip = "gzip",
        Lz4 = "lz4",
        Zstd = "zstd",
    }
);

/// `[kafka.topics]`: topic names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub invoices: String,
    pub payments: String,
    pub customers: String,
    pub reminders: String,
    pub tasks: String,
    pub events: String,
    pub dlq: String,
}

impl TopicSettings {
    /// Every topic with its key in `[kafka.topics]`.
    pub fn all(&self) -> [(&'static str, &str); 7] {
        [
            ("invoices", &self.invoices),
            ("payments", &self.payments),
            ("customers", &self.customers),
            ("reminders", &self.reminders),
            ("tasks", &self.tasks),
            ("events", &self.events),
            ("dlq", &self.dlq),
        ]
    }

    /// The topics a billing system publishes to.
    pub fn billing(&self) -> [&str; 3] {
        [&self.invoices, &self.payments, &self.customers]
    }
}

/// `[ingestor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestorSettings {
    pub ops_listen_address: String,
    pub group_id: String,
    pub batch_max_messages: usize,
    pub batch_max_wait_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

/// `[outbox]`: the relay that publishes what transactions wrote to the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    pub poll_interval_ms: u64,
    pub batch_size: u32,
    pub retention_hours: u32,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub ops_listen_address: String,
    pub admin_listen_address: String,
    pub admin_tokens_file: String,
    pub policies_dir: String,
    pub tick_interval_ms: u64,
    pub batch_customers: u32,
    pub history_days: u32,
    pub clock_speed: f64,
}

/// `[sender]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSettings {
    pub ops_listen_address: String,
}

/// `[tracker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSettings {
    pub ops_listen_address: String,
}
