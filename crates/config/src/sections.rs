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
    pub links: LinkSettings,
    pub retention: RetentionSettings,
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
    /// Where spans are exported over OTLP/HTTP (protobuf); empty: not exported.
    pub otlp_endpoint: String,
    /// Share of traces exported, 0.0 to 1.0.
    pub trace_sample_ratio: f64,
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
    pub clock: ClockSettings,
}

/// `[runtime.clock]`: the time every service reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSettings {
    /// How many times faster than real time the clock runs (1: real time).
    pub speed: f64,
    /// The simulated instant shown at `epoch` (RFC 3339; empty: `epoch`).
    pub start: String,
    /// The real instant from which simulated time runs (RFC 3339; empty: process start).
    pub epoch: String,
}

impl ClockSettings {
    /// Whether the clock is the real one.
    pub fn is_real(&self) -> bool {
        (self.speed - 1.0).abs() < f64::EPSILON
            && self.start.trim().is_empty()
            && self.epoch.trim().is_empty()
    }
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
    pub consumer_prefetch_messages: u64,
    pub consumer_prefetch_kbytes: u64,
    pub consumer_fetch_backoff_ms: u64,
    pub auto_offset_reset: AutoOffsetReset,
    pub message_timeout_ms: u64,
    pub dead_letter_max_bytes: u64,
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
    pub concurrent_batches: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

/// `[retention]`: how long relance keeps what it records about people and messages; the
/// scheduler deletes what is older.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub deliveries_days: u32,
    pub interactions_days: u32,
    pub processed_events_days: u32,
    pub dead_letters_days: u32,
    pub interval_minutes: u32,
    pub batch_size: u32,
}

/// `[outbox]`: the relay that publishes what transactions wrote to the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    pub poll_interval_ms: u64,
    pub batch_size: u32,
    pub retention_hours: u32,
    pub unready_after_ms: u64,
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
    pub batch_invoices: u32,
    pub planning_workers: u32,
    pub history_days: u32,
}

/// `[sender]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSettings {
    pub ops_listen_address: String,
    pub group_id: String,
    pub batch_max_messages: usize,
    pub batch_max_wait_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub templates_dir: String,
    pub dispatch_interval_ms: u64,
    pub dispatch_batch: u32,
    pub lease_ms: u64,
    pub reconcile_delay_ms: u64,
    pub reconcile_escalate_after_ms: u64,
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker_threshold: u32,
    pub breaker_cooldown_ms: u64,
    pub config_pause_ms: u64,
    pub frequency_cap_count: u32,
    pub frequency_cap_window_hours: u32,
    pub tenant_label: bool,
    pub identity: SenderIdentity,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantIdentity>,
    pub providers: BTreeMap<String, ProviderSettings>,
}

/// `[sender.identity]`: who reminders come from and through which providers, for every tenant
/// without its own `[sender.tenants.<tenant>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderIdentity {
    pub email_provider: String,
    pub sms_provider: String,
    pub from_email: String,
    pub from_name: String,
    pub reply_to: String,
    pub company_name: String,
    pub company_email: String,
    pub company_phone: String,
    pub company_website: String,
    pub company_address: String,
    pub template_set: String,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub payment_hosts: Vec<String>,
    pub payment_instructions: String,
}

/// `[sender.tenants.<tenant>]`: what differs for one tenant; unset keys come from
/// `[sender.identity]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantIdentity {
    pub email_provider: Option<String>,
    pub sms_provider: Option<String>,
    pub from_email: Option<String>,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub company_name: Option<String>,
    pub company_email: Option<String>,
    pub company_phone: Option<String>,
    pub company_website: Option<String>,
    pub company_address: Option<String>,
    pub template_set: Option<String>,
    #[serde(default, deserialize_with = "optional_list_or_comma_separated")]
    pub payment_hosts: Option<Vec<String>>,
    pub payment_instructions: Option<String>,
}

impl SenderSettings {
    /// The identity of `tenant`: its own values over the defaults. `template_set` is the
    /// tenant's name unless configured.
    pub fn identity_of(&self, tenant: &str) -> SenderIdentity {
        let defaults = &self.identity;
        let own = self.tenants.get(tenant).cloned().unwrap_or_default();
        let pick = |own: Option<String>, default: &String| own.unwrap_or_else(|| default.clone());
        let template_set = own.template_set.clone().unwrap_or_else(|| {
            if defaults.template_set.is_empty() {
                tenant.to_string()
            } else {
                defaults.template_set.clone()
            }
        });
        SenderIdentity {
            email_provider: pick(own.email_provider, &defaults.email_provider),
            sms_provider: pick(own.sms_provider, &defaults.sms_provider),
            from_email: pick(own.from_email, &defaults.from_email),
            from_name: pick(own.from_name, &defaults.from_name),
            reply_to: pick(own.reply_to, &defaults.reply_to),
            company_name: pick(own.company_name, &defaults.company_name),
            company_email: pick(own.company_email, &defaults.company_email),
            company_phone: pick(own.company_phone, &defaults.company_phone),
            company_website: pick(own.company_website, &defaults.company_website),
            company_address: pick(own.company_address, &defaults.company_address),
            template_set,
            payment_hosts: own
                .payment_hosts
                .unwrap_or_else(|| defaults.payment_hosts.clone()),
            payment_instructions: pick(own.payment_instructions, &defaults.payment_instructions),
        }
    }

    /// The hosts each tenant takes payments on, as the ingestor and the tracker check them.
    pub fn payment_hosts(&self) -> relance_links::payment::PaymentHosts {
        relance_links::payment::PaymentHosts {
            default: self.identity.payment_hosts.clone(),
            tenants: self
                .tenants
                .iter()
                .filter_map(|(tenant, own)| {
                    own.payment_hosts
                        .clone()
                        .map(|hosts| (tenant.clone(), hosts))
                })
                .collect(),
        }
    }
}

config_enum!(
    /// What a provider is.
    ProviderKind {
        /// Writes `.eml`, `.html` and `.sms.txt` files to a folder.
        File = "file",
        /// Postmark's email API.
        Postmark = "postmark",
        /// SendGrid's v3 mail send API.
        Sendgrid = "sendgrid",
        /// Twilio's Messages API (SMS).
        Twilio = "twilio",
    }
);

/// `[sender.providers.<name>]`: a configured delivery provider. Which keys apply depends on
/// `kind` (docs/providers.md); a flat table, so every value can come from an environment
/// variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// file: the folder messages are written to.
    #[serde(default)]
    pub folder: String,
    /// HTTP providers: the API's address; empty: the provider's public one.
    #[serde(default)]
    pub base_url: String,
    /// postmark: the server token.
    #[serde(default)]
    pub server_token: Option<SecretString>,
    /// postmark: the transactional message stream.
    #[serde(default = "default_message_stream")]
    pub message_stream: String,
    /// postmark: Postmark's own open tracking.
    #[serde(default = "default_true")]
    pub track_opens: bool,
    /// sendgrid: the API key.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// sendgrid: validate without sending.
    #[serde(default)]
    pub sandbox: bool,
    /// twilio: the account SID and auth token.
    #[serde(default)]
    pub account_sid: String,
    #[serde(default)]
    pub auth_token: Option<SecretString>,
    /// twilio: the sending number or sender id, or a messaging service.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub messaging_service_sid: String,
    /// twilio: where Twilio posts delivery statuses; empty: nowhere.
    #[serde(default)]
    pub status_callback: String,
    /// HTTP providers: how long one request may take.
    #[serde(default = "default_provider_timeout_ms")]
    pub timeout_ms: u64,
    /// Messages a second at most, shared by every replica; 0: no limit of ours.
    #[serde(default)]
    pub rate_per_second: f64,
    /// Messages sent at once, when the provider has no batch endpoint.
    #[serde(default = "default_provider_concurrency")]
    pub concurrency: u32,
}

impl ProviderSettings {
    /// Whether the provider delivers email (file providers deliver both).
    pub fn sends_email(&self) -> bool {
        self.kind != ProviderKind::Twilio
    }

    /// Whether the provider delivers SMS.
    pub fn sends_sms(&self) -> bool {
        matches!(self.kind, ProviderKind::Twilio | ProviderKind::File)
    }

    /// The API address: configured, or the provider's public one.
    pub fn api_url(&self) -> String {
        if !self.base_url.trim().is_empty() {
            return self.base_url.trim().to_string();
        }
        match self.kind {
            ProviderKind::File => String::new(),
            ProviderKind::Postmark => "https://api.postmarkapp.com".into(),
            ProviderKind::Sendgrid => "https://api.sendgrid.com".into(),
            ProviderKind::Twilio => "https://api.twilio.com".into(),
        }
    }
}

fn default_message_stream() -> String {
    "outbound".into()
}
fn default_provider_timeout_ms() -> u64 {
    10_000
}
fn default_provider_concurrency() -> u32 {
    4
}
fn default_true() -> bool {
    true
}

/// `[links]`: the signed customer links (pay, already paid, dispute, promise) and the
/// tracking pixel, served by the tracker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    pub public_base_url: String,
    pub signing_keys_file: String,
    pub min_valid_days: u32,
    pub valid_days_after_deadline: u32,
    pub max_valid_days: u32,
}

config_enum!(
    /// How a payment is credited to the reminders before it.
    AttributionModel {
        /// All of it to the last reminder before the payment.
        LastTouch = "last_touch",
        /// All of it to the first reminder in the window.
        FirstTouch = "first_touch",
        /// Shared equally.
        Linear = "linear",
    }
);

/// `[tracker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSettings {
    pub ops_listen_address: String,
    pub public_listen_address: String,
    pub pages_dir: String,
    pub policies_dir: String,
    pub group_id: String,
    pub batch_max_messages: usize,
    pub batch_max_wait_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub attribution_model: AttributionModel,
    pub attribution_window_days: u32,
    pub rate_limit_per_minute: u32,
    pub trusted_proxy_hops: u32,
    pub open_too_soon_seconds: u32,
    pub click_too_soon_seconds: u32,
    pub burst_seconds: u32,
    pub tenant_label: bool,
    pub hsts_max_age_seconds: u32,
    pub postmark_webhook_username: String,
    pub postmark_webhook_password: SecretString,
    pub sendgrid_webhook_public_key: String,
    pub sendgrid_webhook_tolerance_seconds: u32,
}

/// A list from a file (`["a", "b"]`) or from one environment variable (`a,b`: environment
/// values are text).
fn list_or_comma_separated<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn optional_list_or_comma_separated<'de, D>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    list_or_comma_separated(deserializer).map(Some)
}
