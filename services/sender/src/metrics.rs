//! The sender's metrics. Delivery counters carry segment, step, channel, template and variant
//! labels (and the tenant only when `sender.tenant_label` asks for it: a platform may serve
//! thousands of tenants, and label cardinality is what breaks Prometheus).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The labels of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLabels {
    pub tenant: String,
    pub segment: String,
    pub step: String,
    pub channel: String,
    pub template: String,
    pub variant: String,
}

/// Counters and histograms of the sender.
#[derive(Clone)]
pub struct SenderMetrics {
    tenant_label: bool,
    commands: IntCounterVec,
    sent: IntCounterVec,
    skipped: IntCounterVec,
    failed: IntCounterVec,
    retries: IntCounterVec,
    attempts: IntCounterVec,
    provider_latency: HistogramVec,
    reconciled: IntCounterVec,
    circuit_open: IntCounterVec,
    backlog_due: IntGauge,
    backlog_waiting: IntGauge,
    stale_writes: prometheus::IntCounter,
}

const DELIVERY_LABELS: [&str; 5] = ["segment", "step", "channel", "template", "variant"];

fn delivery_labels(tenant_label: bool, extra: &[&'static str]) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = Vec::new();
    if tenant_label {
        labels.push("tenant");
    }
    labels.extend(DELIVERY_LABELS);
    labels.extend(extra);
    labels
}

/// Why a delivery fails for good (`relance_reminders_failed_total{reason}`): the codes of
/// `GiveUpReason` and a template that cannot render.
const FAILURE_REASONS: [&str; 4] = [
    "provider_rejected",
    "attempts_exhausted",
    "outcome_unknown",
    "template_error",
];

impl SenderMetrics {
    /// Registers the metrics.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry, tenant_label: bool) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(counter.clone()))?;
                Ok(counter)
            };
        let commands = counter(
            "relance_sender_commands_total",
            "Reminder commands consumed, by outcome (accepted, duplicate, dead_lettered).",
            &["outcome"],
        )?;
        let sent = counter(
            "relance_reminders_sent_total",
            "Reminders handed to a provider, by segment, step, channel, template, variant and provider.",
            &delivery_labels(tenant_label, &["provider"]),
        )?;
        let skipped = counter(
            "relance_reminders_skipped_total",
            "Reminders not sent because the guard found a reason just before sending (invoice_paid, contact_bounced, frequency_cap...).",
            &delivery_labels(tenant_label, &["reason"]),
        )?;
        let failed = counter(
            "relance_reminders_failed_total",
            "Reminders given up for good, by reason (provider_rejected, attempts_exhausted, template_error, outcome_unknown).",
            &delivery_labels(tenant_label, &["reason"]),
        )?;
        let retries = counter(
            "relance_reminder_retries_total",
            "Delivery attempts scheduled again after a transient or ambiguous failure, by provider and outcome class.",
            &["provider", "class"],
        )?;
        let attempts = counter(
            "relance_provider_attempts_total",
            "Delivery attempts by provider and outcome class (accepted, permanent, transient, ambiguous, config).",
            &["provider", "class"],
        )?;
        let provider_latency = HistogramVec::new(
            HistogramOpts::new(
                "relance_provider_request_duration_seconds",
                "Time a provider took to answer a send request (a batch counts once), by provider.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider"],
        )?;
        registry.register(Box::new(provider_latency.clone()))?;
        let reconciled = counter(
            "relance_delivery_reconciliations_total",
            "Attempts whose outcome was unknown, reconciled with the provider, by result (found, not_found, unsupported, unavailable).",
            &["provider", "result"],
        )?;
        let circuit_open = counter(
            "relance_provider_circuit_open_total",
            "Times a provider's circuit opened or it was paused for a configuration error, by provider and cause.",
            &["provider", "cause"],
        )?;
        let backlog_due = IntGauge::new(
            "relance_deliveries_due",
            "Deliveries due now and not yet attempted (a growing value means the sender falls behind).",
        )?;
        registry.register(Box::new(backlog_due.clone()))?;
        let backlog_waiting = IntGauge::new(
            "relance_deliveries_waiting_retry",
            "Deliveries waiting for a later attempt (retries, reconciliations, open circuits).",
        )?;
        registry.register(Box::new(backlog_waiting.clone()))?;
        let stale_writes = prometheus::IntCounter::new(
            "relance_sender_stale_claims_total",
            "Writes refused because another dispatcher claimed the delivery after this one's lease ran out (the fencing token changed). Nothing was sent from the stale claim; a steady rise means leases are too short for the providers' answers.",
        )?;
        registry.register(Box::new(stale_writes.clone()))?;
        for outcome in ["accepted", "duplicate", "dead_lettered"] {
            commands.with_label_values(&[outcome]);
        }
        Ok(Self {
            tenant_label,
            commands,
            sent,
            skipped,
            failed,
            retries,
            attempts,
            provider_latency,
            reconciled,
            circuit_open,
            backlog_due,
            backlog_waiting,
            stale_writes,
        })
    }

    fn values<'a>(&self, labels: &'a DeliveryLabels, extra: &'a str) -> Vec<&'a str> {
        let mut values: Vec<&str> = Vec::new();
        if self.tenant_label {
            values.push(&labels.tenant);
        }
        values.extend([
            labels.segment.as_str(),
            labels.step.as_str(),
            labels.channel.as_str(),
            labels.template.as_str(),
            labels.variant.as_str(),
            extra,
        ]);
        values
    }

    pub fn command(&self, outcome: &str, count: usize) {
        self.commands
            .with_label_values(&[outcome])
            .inc_by(count as u64);
    }

    pub fn sent(&self, labels: &DeliveryLabels, provider: &str) {
        self.sent
            .with_label_values(&self.values(labels, provider))
            .inc();
        // Failures exist at zero beside what was sent, so that failure rates always compute.
        for reason in FAILURE_REASONS {
            self.failed
                .with_label_values(&self.values(labels, reason))
                .inc_by(0);
        }
    }

    /// Creates `provider`'s series at zero (at start, for every configured provider): alerts
    /// on their rates cannot see a first failure or a first circuit opening otherwise.
    pub fn provider_configured(&self, provider: &str) {
        for class in ["accepted", "permanent", "transient", "ambiguous", "config"] {
            self.attempts
                .with_label_values(&[provider, class])
                .inc_by(0);
        }
        for class in ["transient", "ambiguous"] {
            self.retries.with_label_values(&[provider, class]).inc_by(0);
        }
        for result in ["found", "not_found", "unsupported", "unavailable"] {
            self.reconciled
                .with_label_values(&[provider, result])
                .inc_by(0);
        }
        for cause in ["failures", "config"] {
            self.circuit_open
                .with_label_values(&[provider, cause])
                .inc_by(0);
        }
    }

    pub fn skipped(&self, labels: &DeliveryLabels, reason: &str) {
        self.skipped
            .with_label_values(&self.values(labels, reason))
            .inc();
    }

    pub fn failed(&self, labels: &DeliveryLabels, reason: &str) {
        self.failed
            .with_label_values(&self.values(labels, reason))
            .inc();
    }

    pub fn retry(&self, provider: &str, class: &str) {
        self.retries.with_label_values(&[provider, class]).inc();
    }

    pub fn attempt(&self, provider: &str, class: &str) {
        self.attempts.with_label_values(&[provider, class]).inc();
    }

    pub fn provider_latency(&self, provider: &str, seconds: f64) {
        self.provider_latency
            .with_label_values(&[provider])
            .observe(seconds);
    }

    pub fn reconciled(&self, provider: &str, result: &str) {
        self.reconciled.with_label_values(&[provider, result]).inc();
    }

    pub fn circuit_opened(&self, provider: &str, cause: &str) {
        self.circuit_open
            .with_label_values(&[provider, cause])
            .inc();
    }

    pub fn stale_write(&self) {
        self.stale_writes.inc();
    }

    pub fn backlog(&self, due: i64, waiting: i64) {
        self.backlog_due.set(due);
        self.backlog_waiting.set(waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> DeliveryLabels {
        DeliveryLabels {
            tenant: "acme".into(),
            segment: "standard".into(),
            step: "first_reminder".into(),
            channel: "email".into(),
            template: "first_reminder".into(),
            variant: String::new(),
        }
    }

    fn exposition(registry: &Registry) -> String {
        use prometheus::Encoder as _;
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buffer)
            .unwrap_or_default();
        String::from_utf8(buffer).unwrap_or_default()
    }

    #[test]
    fn the_tenant_is_a_label_only_when_configuration_asks_for_it() {
        let without = Registry::new();
        let metrics =
            SenderMetrics::register(&without, false).unwrap_or_else(|error| panic!("{error}"));
        metrics.sent(&labels(), "postmark");
        metrics.skipped(&labels(), "invoice_paid");
        let text = exposition(&without);
        assert!(text.contains("relance_reminders_sent_total{channel=\"email\",provider=\"postmark\",segment=\"standard\",step=\"first_reminder\",template=\"first_reminder\",variant=\"\"} 1"), "{text}");
        assert!(!text.contains("tenant="), "{text}");

        let with = Registry::new();
        let metrics =
            SenderMetrics::register(&with, true).unwrap_or_else(|error| panic!("{error}"));
        metrics.skipped(&labels(), "invoice_paid");
        let text = exposition(&with);
        assert!(text.contains("reason=\"invoice_paid\""), "{text}");
        assert!(text.contains("tenant=\"acme\""), "{text}");
    }
}
