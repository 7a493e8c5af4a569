//! Start-up validation: every value that is well-typed but wrong, with its key and value.

use std::fmt;
use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use crate::sections::{KafkaSettings, Settings};

/// The relance services, each validating the settings it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    Ingestor,
    Scheduler,
    Sender,
    Tracker,
}

impl ServiceName {
    /// The service's name, as in its binary and its `[section]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingestor => "ingestor",
            Self::Scheduler => "scheduler",
            Self::Sender => "sender",
            Self::Tracker => "tracker",
        }
    }

    /// All four.
    pub const ALL: [ServiceName; 4] =
        [Self::Ingestor, Self::Scheduler, Self::Sender, Self::Tracker];
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid value: `kafka.session_timeout_ms = 500: must be at least 6000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// Dotted key, as in the file (`kafka.session_timeout_ms`).
    pub key: String,
    /// The value as read, or `[redacted]` for secrets.
    pub value: String,
    /// What it must be instead.
    pub reason: String,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.reason)
    }
}

#[derive(Default)]
struct Findings(Vec<InvalidSetting>);

impl Findings {
    fn add(&mut self, key: impl Into<String>, value: impl fmt::Debug, reason: impl Into<String>) {
        self.0.push(InvalidSetting {
            key: key.into(),
            value: format!("{value:?}"),
            reason: reason.into(),
        });
    }

    fn add_secret(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(InvalidSetting {
            key: key.into(),
            value: "[redacted]".into(),
            reason: reason.into(),
        });
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.add(key, value, format!("must be between {min} and {max}"));
        }
    }

    fn not_blank(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(key, value, "must not be empty");
        }
    }

    /// A consumer's group, batching and retry settings, in `[section]`.
    fn consumer(
        &mut self,
        section: &str,
        group_id: &str,
        batch_max_messages: usize,
        batch_max_wait_ms: u64,
        (retry_initial_ms, retry_max_ms): (u64, u64),
    ) {
        self.not_blank(&format!("{section}.group_id"), group_id);
        self.range(
            &format!("{section}.batch_max_messages"),
            batch_max_messages as u64,
            1,
            10_000,
        );
        self.range(
            &format!("{section}.batch_max_wait_ms"),
            batch_max_wait_ms,
            1,
            60_000,
        );
        self.range(
            &format!("{section}.retry_initial_ms"),
            retry_initial_ms,
            1,
            60_000,
        );
        self.range(
            &format!("{section}.retry_max_ms"),
            retry_max_ms,
            retry_initial_ms.max(1),
            600_000,
        );
    }

    fn socket_address(&mut self, key: &str, value: &str) {
        if value.parse::<SocketAddr>().is_err() {
            self.add(
                key,
                value,
                "must be an IP address and port, such as 0.0.0.0:9101",
            );
        }
    }

    fn topic_name(&mut self, key: &str, value: &str) {
        // Kafka's own rule for topic names.
        let legal = !value.is_empty()
            && value.len() <= 249
            && value != "."
            && value != ".."
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !legal {
            self.add(
                key,
                value,
                "must be 1 to 249 characters of letters, digits, '.', '_' and '-'",
            );
        }
    }
}

/// librdkafka properties that a typed setting controls: passing them through is an error.
const TYPED_LIBRDKAFKA_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("metadata.broker.list", "kafka.bootstrap_servers"),
    ("client.id", "kafka.client_id"),
    ("group.id", "the service's group_id"),
    ("security.protocol", "kafka.security_protocol"),
    ("sasl.mechanism", "kafka.sasl_mechanism"),
    ("sasl.mechanisms", "kafka.sasl_mechanism"),
    ("sasl.username", "kafka.sasl_username"),
    ("sasl.password", "kafka.sasl_password"),
    ("ssl.ca.location", "kafka.ssl_ca_location"),
    ("ssl.certificate.location", "kafka.ssl_certificate_location"),
    ("ssl.key.location", "kafka.ssl_key_location"),
    ("ssl.key.password", "kafka.ssl_key_password"),
    ("session.timeout.ms", "kafka.session_timeout_ms"),
    ("heartbeat.interval.ms", "kafka.heartbeat_interval_ms"),
    ("max.poll.interval.ms", "kafka.max_poll_interval_ms"),
    ("fetch.wait.max.ms", "kafka.fetch_wait_max_ms"),
    ("queued.min.messages", "kafka.consumer_prefetch_messages"),
    (
        "queued.max.messages.kbytes",
        "kafka.consumer_prefetch_kbytes",
    ),
    ("fetch.queue.backoff.ms", "kafka.consumer_fetch_backoff_ms"),
    ("auto.offset.reset", "kafka.auto_offset_reset"),
    ("message.timeout.ms", "kafka.message_timeout_ms"),
    ("delivery.timeout.ms", "kafka.message_timeout_ms"),
    ("linger.ms", "kafka.linger_ms"),
    ("statistics.interval.ms", "kafka.statistics_interval_ms"),
    ("queue.buffering.max.ms", "kafka.linger_ms"),
    ("compression.codec", "kafka.compression"),
    ("compression.type", "kafka.compression"),
    // relance's delivery guarantees depend on these; they are not negotiable.
    (
        "enable.auto.commit",
        "relance (offsets are committed after processing)",
    ),
    (
        "enable.auto.offset.store",
        "relance (offsets are committed after processing)",
    ),
    ("enable.idempotence", "relance (producers are idempotent)"),
    ("acks", "relance (producers wait for all in-sync replicas)"),
    (
        "request.required.acks",
        "relance (producers wait for all in-sync replicas)",
    ),
];

impl Settings {
    /// Checks every value `service` uses.
    ///
    /// # Errors
    /// Every invalid value found, each with its key and value.
    pub fn validate(&self, service: ServiceName) -> Result<(), Vec<InvalidSetting>> {
        let mut findings = Findings::default();
        self.validate_telemetry(&mut findings);
        self.validate_runtime(&mut findings);
        self.validate_database(&mut findings);
        validate_kafka(&self.kafka, &mut findings);
        let clock = &self.runtime.clock;
        if !(clock.speed.is_finite() && (1.0..=1_000_000.0).contains(&clock.speed)) {
            findings.add(
                "runtime.clock.speed",
                clock.speed,
                "must be between 1 (real time) and 1000000",
            );
        }
        for (key, value) in [
            ("runtime.clock.start", &clock.start),
            ("runtime.clock.epoch", &clock.epoch),
        ] {
            if !value.trim().is_empty()
                && chrono::DateTime::parse_from_rfc3339(value.trim()).is_err()
            {
                findings.add(
                    key,
                    value,
                    "must be an RFC 3339 instant (2026-12-01T09:00:00Z) or empty",
                );
            }
        }
        if self.runtime.shutdown_timeout_ms >= self.kafka.session_timeout_ms {
            findings.add(
                "runtime.shutdown_timeout_ms",
                self.runtime.shutdown_timeout_ms,
                format!(
                    "must be shorter than kafka.session_timeout_ms ({}), or the group would evict the member while it drains",
                    self.kafka.session_timeout_ms
                ),
            );
        }
        let section = service.as_str();
        findings.range(
            "outbox.poll_interval_ms",
            self.outbox.poll_interval_ms,
            10,
            600_000,
        );
        findings.range(
            "outbox.unready_after_ms",
            self.outbox.unready_after_ms,
            1_000,
            86_400_000,
        );
        findings.range(
            "outbox.batch_size",
            u64::from(self.outbox.batch_size),
            1,
            100_000,
        );
        findings.range(
            "outbox.retention_hours",
            u64::from(self.outbox.retention_hours),
            0,
            24 * 365,
        );
        findings.socket_address(
            &format!("{section}.ops_listen_address"),
            self.ops_listen_address(service),
        );
        if service == ServiceName::Scheduler {
            self.validate_retention(&mut findings);
        }
        if service == ServiceName::Scheduler {
            self.validate_scheduler(&mut findings);
            self.validate_templates_dir(&mut findings);
        }
        if matches!(
            service,
            ServiceName::Sender | ServiceName::Tracker | ServiceName::Ingestor
        ) {
            self.validate_payment_settings(&mut findings);
        }
        if service == ServiceName::Sender {
            self.validate_sender(&mut findings);
            self.validate_links(&mut findings);
        }
        if service == ServiceName::Tracker {
            self.validate_tracker(&mut findings);
            self.validate_links(&mut findings);
        }
        if service == ServiceName::Ingestor {
            findings.not_blank("ingestor.group_id", &self.ingestor.group_id);
            findings.range(
                "ingestor.batch_max_messages",
                self.ingestor.batch_max_messages as u64,
                1,
                100_000,
            );
            findings.range(
                "ingestor.batch_max_wait_ms",
                self.ingestor.batch_max_wait_ms,
                1,
                60_000,
            );
            findings.range(
                "ingestor.concurrent_batches",
                u64::from(self.ingestor.concurrent_batches),
                1,
                16,
            );
            // Each batch in flight holds a connection through its transaction; the outbox
            // relay needs its own.
            if self.ingestor.concurrent_batches.saturating_add(1) > self.database.max_connections {
                findings.add(
                    "ingestor.concurrent_batches",
                    self.ingestor.concurrent_batches,
                    format!(
                        "needs database.max_connections ({}) of at least concurrent_batches + 1 (the outbox relay)",
                        self.database.max_connections
                    ),
                );
            }
        }
        if findings.0.is_empty() {
            Ok(())
        } else {
            Err(findings.0)
        }
    }

    fn validate_telemetry(&self, findings: &mut Findings) {
        let filter = &self.telemetry.log_level;
        let levels = ["off", "error", "warn", "info", "debug", "trace"];
        // EnvFilter reads a bare word as "everything from that module", so a mistyped level such
        // as `verbose` would silently log nothing of relance: require levels to be levels.
        let bare_non_level = filter.split(',').map(str::trim).find(|directive| {
            !directive.contains('=') && !levels.contains(&directive.to_ascii_lowercase().as_str())
        });
        let parsed = tracing_subscriber::EnvFilter::builder().parse(filter);
        if filter.trim().is_empty() || bare_non_level.is_some() || parsed.is_err() {
            findings.add(
                "telemetry.log_level",
                filter,
                "must be a level (off, error, warn, info, debug, trace) or a filter such as info,relance_kafka=debug",
            );
        }
        let endpoint = &self.telemetry.otlp_endpoint;
        if !endpoint.is_empty()
            && url::Url::parse(endpoint)
                .map(|url| !matches!(url.scheme(), "http" | "https") || url.host().is_none())
                .unwrap_or(true)
        {
            findings.add(
                "telemetry.otlp_endpoint",
                endpoint,
                "must be empty or an http(s) URL such as http://otel-collector:4318/v1/traces",
            );
        }
        let ratio = self.telemetry.trace_sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            findings.add(
                "telemetry.trace_sample_ratio",
                ratio,
                "must be between 0.0 and 1.0",
            );
        }
    }

    fn validate_tracker(&self, findings: &mut Findings) {
        let tracker = &self.tracker;
        findings.socket_address(
            "tracker.public_listen_address",
            &tracker.public_listen_address,
        );
        if !std::path::Path::new(&tracker.pages_dir).join("en").is_dir() {
            findings.add(
                "tracker.pages_dir",
                &tracker.pages_dir,
                "must be a folder holding the action pages (en/ at least)",
            );
        }
        if !std::path::Path::new(&tracker.policies_dir)
            .join("default.yaml")
            .is_file()
        {
            findings.add(
                "tracker.policies_dir",
                &tracker.policies_dir,
                "must be a folder holding default.yaml",
            );
        }
        findings.consumer(
            "tracker",
            &tracker.group_id,
            tracker.batch_max_messages,
            tracker.batch_max_wait_ms,
            (tracker.retry_initial_ms, tracker.retry_max_ms),
        );
        findings.range(
            "tracker.attribution_window_days",
            u64::from(tracker.attribution_window_days),
            1,
            365,
        );
        findings.range(
            "tracker.rate_limit_per_minute",
            u64::from(tracker.rate_limit_per_minute),
            1,
            100_000,
        );
        findings.range(
            "tracker.trusted_proxy_hops",
            u64::from(tracker.trusted_proxy_hops),
            0,
            10,
        );
        findings.range(
            "tracker.open_too_soon_seconds",
            u64::from(tracker.open_too_soon_seconds),
            0,
            3_600,
        );
        findings.range(
            "tracker.click_too_soon_seconds",
            u64::from(tracker.click_too_soon_seconds),
            0,
            3_600,
        );
        findings.range(
            "tracker.burst_seconds",
            u64::from(tracker.burst_seconds),
            0,
            600,
        );
        let has_user = !tracker.postmark_webhook_username.trim().is_empty();
        let has_password = !tracker
            .postmark_webhook_password
            .expose_secret()
            .trim()
            .is_empty();
        if has_user != has_password {
            findings.add(
                "tracker.postmark_webhook_username",
                &tracker.postmark_webhook_username,
                "set both the username and tracker.postmark_webhook_password, or neither",
            );
        }
        findings.range(
            "tracker.sendgrid_webhook_tolerance_seconds",
            u64::from(tracker.sendgrid_webhook_tolerance_seconds),
            1,
            86_400,
        );
        let key = tracker.sendgrid_webhook_public_key.trim();
        if !key.is_empty() && !looks_like_base64_der_key(key) {
            findings.add(
                "tracker.sendgrid_webhook_public_key",
                key,
                "must be the base64 DER public key SendGrid shows for the signed Event Webhook",
            );
        }
    }

    fn validate_links(&self, findings: &mut Findings) {
        let links = &self.links;
        let base = links.public_base_url.trim();
        if !(base.starts_with("https://") || base.starts_with("http://")) || base.len() < 10 {
            findings.add(
                "links.public_base_url",
                base,
                "must be the tracker's public http(s) address, such as https://pay.example.com",
            );
        }
        match std::fs::read_to_string(&links.signing_keys_file) {
            Ok(text) => {
                if let Err(error) = relance_links::LinkSigner::from_text(&text) {
                    findings.add(
                        "links.signing_keys_file",
                        &links.signing_keys_file,
                        error.to_string(),
                    );
                }
            }
            Err(error) => findings.add(
                "links.signing_keys_file",
                &links.signing_keys_file,
                format!("cannot be read: {error}"),
            ),
        }
        findings.range(
            "links.min_valid_days",
            u64::from(links.min_valid_days),
            1,
            365,
        );
        findings.range(
            "links.valid_days_after_deadline",
            u64::from(links.valid_days_after_deadline),
            0,
            365,
        );
        findings.range(
            "links.max_valid_days",
            u64::from(links.max_valid_days),
            u64::from(links.min_valid_days.max(1)),
            730,
        );
    }

    /// The sender renders the templates; the scheduler checks approvals edited by people
    /// against them.
    fn validate_templates_dir(&self, findings: &mut Findings) {
        let dir = &self.sender.templates_dir;
        if !std::path::Path::new(dir).join("default").is_dir() {
            findings.add(
                "sender.templates_dir",
                dir,
                "must be a folder holding the default template set (default/<locale>/...)",
            );
        }
    }

    fn validate_sender(&self, findings: &mut Findings) {
        let sender = &self.sender;
        findings.consumer(
            "sender",
            &sender.group_id,
            sender.batch_max_messages,
            sender.batch_max_wait_ms,
            (sender.retry_initial_ms, sender.retry_max_ms),
        );
        self.validate_templates_dir(findings);
        findings.range(
            "sender.dispatch_interval_ms",
            sender.dispatch_interval_ms,
            10,
            600_000,
        );
        findings.range(
            "sender.dispatch_batch",
            u64::from(sender.dispatch_batch),
            1,
            1_000,
        );
        findings.range("sender.lease_ms", sender.lease_ms, 1_000, 86_400_000);
        // A reconciliation asks the provider, then the message may follow: both calls, each
        // with a second to record what it learnt, must fit in the lease.
        for (name, provider) in &sender.providers {
            if provider.kind == crate::sections::ProviderKind::File {
                continue;
            }
            let needed = provider.timeout_ms.saturating_add(1_000).saturating_mul(2);
            if sender.lease_ms < needed {
                findings.add(
                    "sender.lease_ms",
                    sender.lease_ms,
                    format!(
                        "must be at least twice sender.providers.{name}.timeout_ms ({}) plus one second, that is {needed}: a dispatcher must be able to ask the provider about an attempt, then send, within its lease",
                        provider.timeout_ms
                    ),
                );
            }
        }
        findings.range(
            "sender.reconcile_delay_ms",
            sender.reconcile_delay_ms,
            0,
            86_400_000,
        );
        findings.range(
            "sender.reconcile_escalate_after_ms",
            sender.reconcile_escalate_after_ms,
            sender.reconcile_delay_ms.max(1),
            30 * 86_400_000,
        );
        findings.range(
            "sender.max_attempts",
            u64::from(sender.max_attempts),
            1,
            100,
        );
        findings.range(
            "sender.backoff_initial_ms",
            sender.backoff_initial_ms,
            1,
            86_400_000,
        );
        findings.range(
            "sender.backoff_max_ms",
            sender.backoff_max_ms,
            sender.backoff_initial_ms.max(1),
            86_400_000,
        );
        findings.range(
            "sender.breaker_threshold",
            u64::from(sender.breaker_threshold),
            1,
            1_000,
        );
        findings.range(
            "sender.breaker_cooldown_ms",
            sender.breaker_cooldown_ms,
            1,
            86_400_000,
        );
        findings.range(
            "sender.config_pause_ms",
            sender.config_pause_ms,
            1,
            86_400_000,
        );
        findings.range(
            "sender.frequency_cap_count",
            u64::from(sender.frequency_cap_count),
            0,
            100,
        );
        findings.range(
            "sender.frequency_cap_window_hours",
            u64::from(sender.frequency_cap_window_hours),
            1,
            24 * 31,
        );
        for (name, provider) in &sender.providers {
            self.validate_provider(findings, &format!("sender.providers.{name}"), provider);
        }
        let identities =
            std::iter::once(("sender.identity".to_string(), self.sender.identity.clone())).chain(
                sender.tenants.keys().map(|tenant| {
                    (
                        format!("sender.tenants.{tenant}"),
                        sender.identity_of(tenant),
                    )
                }),
            );
        for (key, identity) in identities {
            match sender.providers.get(&identity.email_provider) {
                Some(provider) if provider.sends_email() => {}
                Some(provider) => findings.add(
                    format!("{key}.email_provider"),
                    &identity.email_provider,
                    format!(
                        "is a {} provider, which does not send email",
                        provider.kind.as_str()
                    ),
                ),
                None => findings.add(
                    format!("{key}.email_provider"),
                    &identity.email_provider,
                    "must name a [sender.providers.<name>] table",
                ),
            }
            match sender.providers.get(&identity.sms_provider) {
                Some(provider) if provider.sends_sms() => {}
                Some(provider) => findings.add(
                    format!("{key}.sms_provider"),
                    &identity.sms_provider,
                    format!(
                        "is a {} provider, which does not send SMS",
                        provider.kind.as_str()
                    ),
                ),
                None => findings.add(
                    format!("{key}.sms_provider"),
                    &identity.sms_provider,
                    "must name a [sender.providers.<name>] table",
                ),
            }
            for (field, value) in [
                ("from_email", &identity.from_email),
                ("company_email", &identity.company_email),
            ] {
                let parts: Vec<&str> = value.split('@').collect();
                if parts.len() != 2
                    || parts.iter().any(|part| part.trim().is_empty())
                    || value.contains(char::is_whitespace)
                {
                    findings.add(format!("{key}.{field}"), value, "must be an email address");
                }
            }
            findings.not_blank(&format!("{key}.company_name"), &identity.company_name);
            findings.not_blank(&format!("{key}.from_name"), &identity.from_name);
        }
    }

    fn validate_retention(&self, findings: &mut Findings) {
        let retention = &self.retention;
        for (key, days) in [
            ("retention.deliveries_days", retention.deliveries_days),
            ("retention.interactions_days", retention.interactions_days),
            ("retention.dead_letters_days", retention.dead_letters_days),
        ] {
            findings.range(key, u64::from(days), 1, 3_650);
        }
        // Shorter than a topic's retention, a redelivered event would be taken for new.
        findings.range(
            "retention.processed_events_days",
            u64::from(retention.processed_events_days),
            7,
            3_650,
        );
        findings.range(
            "retention.interval_minutes",
            u64::from(retention.interval_minutes),
            1,
            10_080,
        );
        findings.range(
            "retention.batch_size",
            u64::from(retention.batch_size),
            1,
            1_000_000,
        );
    }

    /// The payment hosts and instructions, which the ingestor and the tracker read as well as
    /// the sender.
    fn validate_payment_settings(&self, findings: &mut Findings) {
        let sender = &self.sender;
        let identities = std::iter::once(("sender.identity".to_string(), sender.identity.clone()))
            .chain(sender.tenants.keys().map(|tenant| {
                (
                    format!("sender.tenants.{tenant}"),
                    sender.identity_of(tenant),
                )
            }));
        for (key, identity) in identities {
            for host in &identity.payment_hosts {
                if !relance_links::payment::is_host_pattern(host) {
                    findings.add(
                        format!("{key}.payment_hosts"),
                        host,
                        "must be a host name (pay.example.com) or *. and a domain (*.example.com)",
                    );
                }
            }
            if identity.payment_instructions.len() > 1_000 {
                findings.add(
                    format!("{key}.payment_instructions"),
                    &identity.payment_instructions,
                    "must be at most 1000 characters",
                );
            }
        }
    }

    fn validate_provider(
        &self,
        findings: &mut Findings,
        key: &str,
        provider: &crate::sections::ProviderSettings,
    ) {
        use crate::sections::ProviderKind;
        let secret = |findings: &mut Findings, field: &str, value: &Option<SecretString>| {
            if value
                .as_ref()
                .is_none_or(|value| value.expose_secret().trim().is_empty())
            {
                findings.add_secret(
                    format!("{key}.{field}"),
                    "must be set (from a secret, through the RELANCE__SENDER__PROVIDERS__... environment variable)",
                );
            }
        };
        findings.range(
            &format!("{key}.concurrency"),
            u64::from(provider.concurrency),
            1,
            100,
        );
        if provider.kind == ProviderKind::File {
            findings.not_blank(&format!("{key}.folder"), &provider.folder);
            return;
        }
        let url = provider.api_url();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            findings.add(
                format!("{key}.base_url"),
                &provider.base_url,
                "must be an http(s) URL",
            );
        }
        findings.range(
            &format!("{key}.timeout_ms"),
            provider.timeout_ms,
            100,
            120_000,
        );
        if !(provider.rate_per_second.is_finite()
            && (0.0..=100_000.0).contains(&provider.rate_per_second))
        {
            findings.add(
                format!("{key}.rate_per_second"),
                provider.rate_per_second,
                "must be between 0 (unlimited) and 100000",
            );
        }
        match provider.kind {
            ProviderKind::File => {}
            ProviderKind::Postmark => {
                secret(findings, "server_token", &provider.server_token);
                findings.not_blank(&format!("{key}.message_stream"), &provider.message_stream);
            }
            ProviderKind::Sendgrid => secret(findings, "api_key", &provider.api_key),
            ProviderKind::Twilio => {
                findings.not_blank(&format!("{key}.account_sid"), &provider.account_sid);
                secret(findings, "auth_token", &provider.auth_token);
                if provider.from.trim().is_empty()
                    && provider.messaging_service_sid.trim().is_empty()
                {
                    findings.add(
                        format!("{key}.from"),
                        &provider.from,
                        "set from or messaging_service_sid",
                    );
                }
            }
        }
    }

    fn validate_scheduler(&self, findings: &mut Findings) {
        let scheduler = &self.scheduler;
        findings.socket_address(
            "scheduler.admin_listen_address",
            &scheduler.admin_listen_address,
        );
        match crate::admin_tokens::read_admin_tokens(&scheduler.admin_tokens_file) {
            Ok(_) => {}
            Err(reason) => findings.add(
                "scheduler.admin_tokens_file",
                &scheduler.admin_tokens_file,
                reason,
            ),
        }
        if !std::path::Path::new(&scheduler.policies_dir)
            .join("default.yaml")
            .is_file()
        {
            findings.add(
                "scheduler.policies_dir",
                &scheduler.policies_dir,
                "must be a folder holding default.yaml",
            );
        }
        findings.range(
            "scheduler.tick_interval_ms",
            scheduler.tick_interval_ms,
            10,
            600_000,
        );
        findings.range(
            "scheduler.batch_customers",
            u64::from(scheduler.batch_customers),
            1,
            10_000,
        );
        findings.range(
            "scheduler.batch_invoices",
            u64::from(scheduler.batch_invoices),
            1,
            1_000_000,
        );
        findings.range(
            "scheduler.planning_workers",
            u64::from(scheduler.planning_workers),
            1,
            32,
        );
        // Each worker holds a connection through its round; the outbox relay and the admin
        // API need theirs.
        if scheduler.planning_workers.saturating_add(2) > self.database.max_connections {
            findings.add(
                "scheduler.planning_workers",
                scheduler.planning_workers,
                format!(
                    "needs database.max_connections ({}) of at least planning_workers + 2 (the outbox relay and the admin API)",
                    self.database.max_connections
                ),
            );
        }
        findings.range(
            "scheduler.history_days",
            u64::from(scheduler.history_days),
            30,
            3_650,
        );
    }

    fn validate_runtime(&self, findings: &mut Findings) {
        findings.range(
            "runtime.shutdown_timeout_ms",
            self.runtime.shutdown_timeout_ms,
            100,
            25_000,
        );
        findings.range(
            "runtime.readiness_timeout_ms",
            self.runtime.readiness_timeout_ms,
            50,
            30_000,
        );
    }

    fn validate_database(&self, findings: &mut Findings) {
        let database = &self.database;
        findings.not_blank("database.host", &database.host);
        if database.port == 0 {
            findings.add(
                "database.port",
                database.port,
                "must be between 1 and 65535",
            );
        }
        findings.not_blank("database.username", &database.username);
        findings.not_blank("database.database_name", &database.database_name);
        findings.range(
            "database.max_connections",
            u64::from(database.max_connections),
            1,
            1000,
        );
        if database.min_connections > database.max_connections {
            findings.add(
                "database.min_connections",
                database.min_connections,
                format!(
                    "must not exceed database.max_connections ({})",
                    database.max_connections
                ),
            );
        }
        findings.range(
            "database.acquire_timeout_ms",
            database.acquire_timeout_ms,
            1,
            300_000,
        );
        findings.range(
            "database.statement_timeout_ms",
            database.statement_timeout_ms,
            0,
            3_600_000,
        );
        if !database.ssl_root_cert.is_empty()
            && !std::path::Path::new(&database.ssl_root_cert).is_file()
        {
            findings.add(
                "database.ssl_root_cert",
                &database.ssl_root_cert,
                "file not found",
            );
        }
    }
}

fn validate_kafka(kafka: &KafkaSettings, findings: &mut Findings) {
    let servers: Vec<&str> = kafka.bootstrap_servers.split(',').map(str::trim).collect();
    let malformed = servers.iter().any(|server| match server.rsplit_once(':') {
        Some((host, port)) => host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0),
        None => true,
    });
    if kafka.bootstrap_servers.trim().is_empty() || malformed {
        findings.add(
            "kafka.bootstrap_servers",
            &kafka.bootstrap_servers,
            "must be a comma-separated list of host:port",
        );
    }
    findings.not_blank("kafka.client_id", &kafka.client_id);
    findings.range(
        "kafka.session_timeout_ms",
        kafka.session_timeout_ms,
        6_000,
        1_800_000,
    );
    if kafka.heartbeat_interval_ms == 0
        || kafka.heartbeat_interval_ms * 3 > kafka.session_timeout_ms
    {
        findings.add(
            "kafka.heartbeat_interval_ms",
            kafka.heartbeat_interval_ms,
            format!(
                "must be positive and at most a third of kafka.session_timeout_ms ({})",
                kafka.session_timeout_ms
            ),
        );
    }
    if kafka.max_poll_interval_ms < kafka.session_timeout_ms
        || kafka.max_poll_interval_ms > 86_400_000
    {
        findings.add(
            "kafka.max_poll_interval_ms",
            kafka.max_poll_interval_ms,
            format!(
                "must be at least kafka.session_timeout_ms ({}) and at most 86400000",
                kafka.session_timeout_ms
            ),
        );
    }
    findings.range(
        "kafka.fetch_wait_max_ms",
        kafka.fetch_wait_max_ms,
        1,
        300_000,
    );
    // librdkafka's own bounds.
    findings.range(
        "kafka.consumer_prefetch_messages",
        kafka.consumer_prefetch_messages,
        1,
        10_000_000,
    );
    findings.range(
        "kafka.consumer_prefetch_kbytes",
        kafka.consumer_prefetch_kbytes,
        1,
        2_097_151,
    );
    findings.range(
        "kafka.consumer_fetch_backoff_ms",
        kafka.consumer_fetch_backoff_ms,
        0,
        300_000,
    );
    findings.range(
        "kafka.dead_letter_max_bytes",
        kafka.dead_letter_max_bytes,
        16_384,
        100_000_000,
    );
    findings.range(
        "kafka.message_timeout_ms",
        kafka.message_timeout_ms,
        1_000,
        900_000,
    );
    findings.range("kafka.linger_ms", kafka.linger_ms, 0, 900_000);
    findings.range(
        "kafka.metadata_timeout_ms",
        kafka.metadata_timeout_ms,
        100,
        300_000,
    );

    let protocol = kafka.security_protocol;
    if protocol.uses_sasl() {
        if !matches!(
            kafka.sasl_mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
        ) {
            findings.add(
                "kafka.sasl_mechanism",
                &kafka.sasl_mechanism,
                format!(
                    "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when kafka.security_protocol is {}",
                    protocol.as_librdkafka()
                ),
            );
        }
        findings.not_blank("kafka.sasl_username", &kafka.sasl_username);
        if kafka.sasl_password.expose_secret().is_empty() {
            findings.add_secret("kafka.sasl_password", "must not be empty with SASL");
        }
    } else if !kafka.sasl_mechanism.is_empty() {
        findings.add(
            "kafka.sasl_mechanism",
            &kafka.sasl_mechanism,
            format!(
                "is set but kafka.security_protocol is {}, which does not use SASL",
                protocol.as_librdkafka()
            ),
        );
    }
    for (key, path) in [
        ("kafka.ssl_ca_location", &kafka.ssl_ca_location),
        (
            "kafka.ssl_certificate_location",
            &kafka.ssl_certificate_location,
        ),
        ("kafka.ssl_key_location", &kafka.ssl_key_location),
    ] {
        if !path.is_empty() {
            if !protocol.uses_tls() {
                findings.add(
                    key,
                    path,
                    format!(
                        "is set but kafka.security_protocol is {}, which does not use TLS",
                        protocol.as_librdkafka()
                    ),
                );
            } else if !std::path::Path::new(path).is_file() {
                findings.add(key, path, "file not found");
            }
        }
    }
    if kafka.ssl_certificate_location.is_empty() != kafka.ssl_key_location.is_empty() {
        findings.add(
            "kafka.ssl_key_location",
            &kafka.ssl_key_location,
            "kafka.ssl_certificate_location and kafka.ssl_key_location go together",
        );
    }
    for (property, value) in &kafka.librdkafka {
        let key = format!("kafka.librdkafka.\"{property}\"");
        if let Some((_, owner)) = TYPED_LIBRDKAFKA_KEYS
            .iter()
            .find(|(name, _)| name == property)
        {
            findings.add(
                key,
                value,
                format!("is controlled by {owner}; set that instead"),
            );
        } else if property.is_empty()
            || !property
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
        {
            findings.add(key, value, "is not a librdkafka property name");
        }
    }
    for (name, topic) in kafka.topics.all() {
        findings.topic_name(&format!("kafka.topics.{name}"), topic);
    }
    let mut seen = std::collections::BTreeMap::new();
    for (name, topic) in kafka.topics.all() {
        if let Some(first) = seen.insert(topic, name) {
            findings.add(
                format!("kafka.topics.{name}"),
                topic,
                format!("is also the name of kafka.topics.{first}; every topic must be distinct"),
            );
        }
    }
}

/// Whether a SendGrid public key looks like base64 DER (the tracker parses it fully at start).
fn looks_like_base64_der_key(key: &str) -> bool {
    key.len() >= 80
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}
