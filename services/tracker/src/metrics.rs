//! The tracker's metrics, for open rate, click rate, conversion and recovered amounts. Labels
//! are the delivery's segment, step, channel, template and variant, plus the tenant only when
//! `tracker.tenant_label` asks for it.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use relance_storage::tracking::TrackedDelivery;

const LABELS: [&str; 5] = ["segment", "step", "channel", "template", "variant"];

/// Counters and histograms of the tracker.
#[derive(Clone)]
pub struct TrackerMetrics {
    tenant_label: bool,
    opens: IntCounterVec,
    opened: IntCounterVec,
    clicks: IntCounterVec,
    clicks_taken_back: IntCounterVec,
    clicked: IntCounterVec,
    clicks_withdrawn: IntCounterVec,
    delivered: IntCounterVec,
    bounced: IntCounterVec,
    complained: IntCounterVec,
    actions: IntCounterVec,
    attributed: IntCounterVec,
    recovered: IntCounterVec,
    time_to_payment: HistogramVec,
    webhook_events: IntCounterVec,
    link_requests: IntCounterVec,
    unreadable: IntCounterVec,
}

impl TrackerMetrics {
    /// Registers the metrics.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry, tenant_label: bool) -> Result<Self, prometheus::Error> {
        let labels = |extra: &[&'static str]| -> Vec<&'static str> {
            let mut labels = Vec::new();
            if tenant_label {
                labels.push("tenant");
            }
            labels.extend(LABELS);
            labels.extend(extra);
            labels
        };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(counter.clone()))?;
                Ok(counter)
            };
        let time_to_payment = HistogramVec::new(
            HistogramOpts::new(
                "relance_time_to_payment_seconds",
                "Time from the first reminder about an invoice to its payment, for attributed payments, by the segment and channel of the credited reminder.",
            )
            .buckets(vec![3600.0, 21600.0, 86400.0, 259_200.0, 604_800.0, 1_209_600.0, 2_592_000.0, 5_184_000.0, 7_776_000.0]),
            &["segment", "channel"],
        )?;
        registry.register(Box::new(time_to_payment.clone()))?;
        Ok(Self {
            tenant_label,
            opens: counter("relance_reminder_opens_total", "Every open seen (pixel or provider), by classification (human, machine).", &labels(&["classification"]))?,
            opened: counter("relance_reminders_opened_total", "Reminders opened by a person at least once (each counted once): the numerator of the open rate.", &labels(&[]))?,
            clicks: counter("relance_reminder_clicks_total", "Every click seen, by link (pay, already_paid, dispute, promise_to_pay, payment_plan, other) and classification.", &labels(&["link", "classification"]))?,
            clicks_taken_back: counter("relance_reminder_clicks_reclassified_total", "Clicks counted human when they came, then taken back as machine (burst) when clicks on other links of the same message followed within tracker.burst_seconds, by link. Human clicks: relance_reminder_clicks_total{classification=\"human\"} minus this; machine clicks: {classification=\"machine\"} plus this.", &labels(&["link"]))?,
            clicked: counter("relance_reminders_clicked_total", "Reminders in which a person clicked at least once (each counted once, at the first human click); minus relance_reminders_click_withdrawn_total, the numerator of the click rate.", &labels(&[]))?,
            clicks_withdrawn: counter("relance_reminders_click_withdrawn_total", "Reminders counted clicked whose human clicks all turned out to be the start of a scanner's burst: subtract from relance_reminders_clicked_total.", &labels(&[]))?,
            delivered: counter("relance_reminders_delivered_total", "Reminders the provider reports delivered.", &labels(&["provider"]))?,
            bounced: counter("relance_reminders_bounced_total", "Reminders that bounced, by kind (hard, soft).", &labels(&["provider", "kind"]))?,
            complained: counter("relance_reminders_complained_total", "Reminders reported as spam by the recipient.", &labels(&["provider"]))?,
            actions: counter("relance_customer_actions_total", "Actions customers took on the action pages (already_paid, dispute, promise_to_pay, payment_plan_request, link_renewal).", &labels(&["action"]))?,
            attributed: counter("relance_payments_attributed_total", "Payments credited to a reminder, by attribution model.", &labels(&["model"]))?,
            recovered: counter("relance_recovered_amount_minor_total", "Amount of payments credited to reminders, in minor units (cents), by currency.", &labels(&["currency"]))?,
            time_to_payment,
            webhook_events: counter("relance_webhook_events_total", "Provider webhook events, by provider, kind and outcome (handled, duplicate, unknown_message, malformed).", &["provider", "kind", "outcome"])?,
            link_requests: counter("relance_link_requests_total", "Requests to the links and pages, by route and outcome (ok, not_found, expired, rate_limited, invalid_form, payment_url_refused).", &["route", "outcome"])?,
            unreadable: counter("relance_tracker_records_unreadable_total", "Billing records the tracker could not read for attribution, by dead-letter reason (the ingestor dead-letters the same record).", &["reason"])?,
        }
        .with_refusals_at_zero())
    }

    /// The refusals the alerts watch exist at zero from the start: an alert on their rate
    /// cannot see the first one otherwise.
    fn with_refusals_at_zero(self) -> Self {
        self.link_requests
            .with_label_values(&["any", "rate_limited"])
            .inc_by(0);
        for provider in ["postmark", "sendgrid"] {
            for outcome in ["unauthorized", "malformed"] {
                self.webhook_events
                    .with_label_values(&[provider, "any", outcome])
                    .inc_by(0);
            }
        }
        self
    }

    fn values<'a>(&self, delivery: &'a TrackedDelivery, extra: &[&'a str]) -> Vec<&'a str> {
        let mut values: Vec<&str> = Vec::new();
        if self.tenant_label {
            values.push(&delivery.tenant);
        }
        values.extend([
            delivery.segment.as_str(),
            delivery.step_id.as_str(),
            delivery.channel.as_str(),
            delivery.template.as_str(),
            delivery.variant.as_deref().unwrap_or(""),
        ]);
        values.extend(extra);
        values
    }

    pub fn open(&self, delivery: &TrackedDelivery, classification: &str, first_human: bool) {
        self.opens
            .with_label_values(&self.values(delivery, &[classification]))
            .inc();
        if first_human {
            self.opened
                .with_label_values(&self.values(delivery, &[]))
                .inc();
        }
    }

    pub fn click(
        &self,
        delivery: &TrackedDelivery,
        link: &str,
        classification: &str,
        first_human: bool,
    ) {
        self.clicks
            .with_label_values(&self.values(delivery, &[link, classification]))
            .inc();
        // The corrections exist at zero beside what they correct, so that "human minus taken
        // back" and "machine plus taken back" always have both sides in PromQL.
        self.clicks_taken_back
            .with_label_values(&self.values(delivery, &[link]))
            .inc_by(0);
        if first_human {
            self.clicked
                .with_label_values(&self.values(delivery, &[]))
                .inc();
            self.clicks_withdrawn
                .with_label_values(&self.values(delivery, &[]))
                .inc_by(0);
        }
    }

    /// A click counted human, taken back as the start of a scanner's burst.
    pub fn click_taken_back(&self, delivery: &TrackedDelivery, link: &str) {
        self.clicks_taken_back
            .with_label_values(&self.values(delivery, &[link]))
            .inc();
    }

    /// A reminder counted clicked whose human clicks all turned out to be a scanner's.
    pub fn click_withdrawn(&self, delivery: &TrackedDelivery) {
        self.clicks_withdrawn
            .with_label_values(&self.values(delivery, &[]))
            .inc();
    }

    pub fn delivered(&self, delivery: &TrackedDelivery, provider: &str) {
        self.delivered
            .with_label_values(&self.values(delivery, &[provider]))
            .inc();
        // Bounces and complaints exist at zero beside what was delivered, so that their rates
        // (and the complaint-rate alerts) always have a series to compute.
        for kind in ["hard", "soft"] {
            self.bounced
                .with_label_values(&self.values(delivery, &[provider, kind]))
                .inc_by(0);
        }
        self.complained
            .with_label_values(&self.values(delivery, &[provider]))
            .inc_by(0);
    }

    pub fn bounced(&self, delivery: &TrackedDelivery, provider: &str, hard: bool) {
        self.bounced
            .with_label_values(
                &self.values(delivery, &[provider, if hard { "hard" } else { "soft" }]),
            )
            .inc();
    }

    pub fn complained(&self, delivery: &TrackedDelivery, provider: &str) {
        self.complained
            .with_label_values(&self.values(delivery, &[provider]))
            .inc();
    }

    pub fn action(&self, delivery: &TrackedDelivery, action: &str) {
        self.actions
            .with_label_values(&self.values(delivery, &[action]))
            .inc();
    }

    pub fn attributed(
        &self,
        delivery: &TrackedDelivery,
        model: &str,
        currency: &str,
        amount_minor: i64,
    ) {
        self.attributed
            .with_label_values(&self.values(delivery, &[model]))
            .inc();
        self.recovered
            .with_label_values(&self.values(delivery, &[currency]))
            .inc_by(u64::try_from(amount_minor).unwrap_or(0));
    }

    pub fn time_to_payment(&self, delivery: &TrackedDelivery, seconds: f64) {
        self.time_to_payment
            .with_label_values(&[delivery.segment.as_str(), delivery.channel.as_str()])
            .observe(seconds);
    }

    pub fn webhook(&self, provider: &str, kind: &str, outcome: &str) {
        self.webhook_events
            .with_label_values(&[provider, kind, outcome])
            .inc();
    }

    /// A billing record the attribution consumer could not read.
    pub fn unreadable(&self, reason: &str) {
        self.unreadable.with_label_values(&[reason]).inc();
    }

    pub fn link(&self, route: &str, outcome: &str) {
        self.link_requests
            .with_label_values(&[route, outcome])
            .inc();
    }
}
