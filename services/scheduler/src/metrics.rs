//! The scheduler's metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Counters and histograms of the scheduler.
#[derive(Clone)]
pub struct SchedulerMetrics {
    decided: IntCounterVec,
    customers: IntCounter,
    quarantined: IntCounter,
    tick_duration: Histogram,
    approvals: IntCounterVec,
    retention_deleted: IntCounterVec,
}

impl SchedulerMetrics {
    /// Registers the metrics.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let decided = IntCounterVec::new(
            Opts::new(
                "relance_reminders_scheduled_total",
                "Reminders and tasks decided, by kind (message, task, escalation), channel, step and status (queued, awaiting_approval).",
            ),
            &["kind", "channel", "step", "status"],
        )?;
        let customers = IntCounter::new(
            "relance_scheduler_customers_planned_total",
            "Customers whose invoices were planned.",
        )?;
        let tick_duration = Histogram::with_opts(
            HistogramOpts::new(
                "relance_scheduler_tick_duration_seconds",
                "Time to plan one batch of due customers, in one transaction.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let approvals = IntCounterVec::new(
            Opts::new(
                "relance_approvals_total",
                "Decisions on reminders awaiting approval, by decision (approved, rejected, edited).",
            ),
            &["decision"],
        )?;
        let quarantined = IntCounter::new(
            "relance_scheduler_customers_quarantined_total",
            "Customers the scheduler could not plan because their data cannot form a valid command (a malformed id or currency); each is retried an hour later and logged with the reason.",
        )?;
        let retention_deleted = IntCounterVec::new(
            Opts::new(
                "relance_retention_deleted_total",
                "Rows deleted by the retention job ([retention]), by table (deliveries, delivery_attempts, interactions, processed_events, dead_letters).",
            ),
            &["table"],
        )?;
        for table in [
            "deliveries",
            "delivery_attempts",
            "interactions",
            "processed_events",
            "dead_letters",
        ] {
            retention_deleted.with_label_values(&[table]);
        }
        registry.register(Box::new(retention_deleted.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(decided.clone()))?;
        registry.register(Box::new(customers.clone()))?;
        registry.register(Box::new(tick_duration.clone()))?;
        registry.register(Box::new(approvals.clone()))?;
        for decision in ["approved", "rejected", "edited"] {
            approvals.with_label_values(&[decision]).inc_by(0);
        }
        Ok(Self {
            decided,
            customers,
            quarantined,
            tick_duration,
            approvals,
            retention_deleted,
        })
    }

    pub fn record_retention(&self, table: &str, deleted: u64) {
        self.retention_deleted
            .with_label_values(&[table])
            .inc_by(deleted);
    }

    pub fn record_decided(&self, kind: &str, channel: &str, step: &str, status: &str) {
        self.decided
            .with_label_values(&[kind, channel, step, status])
            .inc();
    }

    pub fn record_quarantined(&self) {
        self.quarantined.inc();
    }

    pub fn record_tick(&self, customers: usize, seconds: f64) {
        self.customers.inc_by(customers as u64);
        self.tick_duration.observe(seconds);
    }

    pub fn record_approval(&self, decision: &str) {
        self.approvals.with_label_values(&[decision]).inc();
    }
}
