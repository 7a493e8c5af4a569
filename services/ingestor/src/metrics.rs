//! The ingestor's metrics: one function per occurrence, so call sites stay one line.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use relance_contracts::DecodeErrorKind;
use relance_domain::RejectionReason;

/// Outcome of one consumed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// The reason code used when the domain refuses a value the contract accepted.
pub const CONVERSION_FAILED: &str = "conversion_failed";

/// Counters and histograms of the ingestor.
#[derive(Clone)]
pub struct IngestMetrics {
    events: IntCounterVec,
    dead_lettered: IntCounterVec,
    state_changes: IntCounterVec,
    batch_size: Histogram,
    batch_duration: Histogram,
    conflicting_amounts: IntCounterVec,
}

impl IngestMetrics {
    /// Registers the metrics, with every dead-letter reason at zero so rates exist from the
    /// start.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "relance_ingest_events_total",
                "Billing events consumed, by type and outcome (applied, duplicate, dead_lettered).",
            ),
            &["event_type", "outcome"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "relance_ingest_dead_lettered_total",
                "Billing events sent to the dead-letter topic, by reason.",
            ),
            &["reason"],
        )?;
        let state_changes = IntCounterVec::new(
            Opts::new(
                "relance_ingest_state_changes_total",
                "Invoice dunning state changes published, by new state.",
            ),
            &["to"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("relance_ingest_batch_size", "Records per applied batch.").buckets(
                vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ],
            ),
        )?;
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "relance_ingest_batch_duration_seconds",
                "Time to apply a batch: decoding, the database transaction and its commit.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let conflicting_amounts = IntCounterVec::new(
            Opts::new(
                "relance_ingest_conflicting_amounts_total",
                "Amounts (payments, credits, refunds) in another currency than their invoice's: kept in its facts and on its timeline, left out of its sums. Each needs a person.",
            ),
            &["event_type"],
        )?;
        registry.register(Box::new(conflicting_amounts.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(state_changes.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_duration.clone()))?;
        let reasons = DecodeErrorKind::ALL
            .iter()
            .map(|kind| kind.code())
            .chain(RejectionReason::ALL.iter().map(|reason| reason.code()))
            .chain([
                CONVERSION_FAILED,
                crate::handler::CONFLICTING_DUPLICATE,
                crate::handler::DATABASE_REFUSED,
                crate::handler::PAYMENT_URL_REFUSED,
            ]);
        for reason in reasons {
            dead_lettered.with_label_values(&[reason]);
        }
        Ok(Self {
            events,
            dead_lettered,
            state_changes,
            batch_size,
            batch_duration,
            conflicting_amounts,
        })
    }

    pub fn record_event(&self, event_type: &str, outcome: Outcome) {
        self.events
            .with_label_values(&[event_type, outcome.label()])
            .inc();
    }

    pub fn record_dead_letter(&self, event_type: &str, reason: &str) {
        self.record_event(event_type, Outcome::DeadLettered);
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    pub fn record_conflicting_amount(&self, event_type: &str) {
        self.conflicting_amounts
            .with_label_values(&[event_type])
            .inc();
    }

    pub fn record_state_change(&self, to: &str) {
        self.state_changes.with_label_values(&[to]).inc();
    }

    pub fn record_batch(&self, size: usize, seconds: f64) {
        self.batch_size.observe(size as f64);
        self.batch_duration.observe(seconds);
    }
}
