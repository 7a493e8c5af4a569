//! The retention job: every `retention.interval_minutes`, what is older than its period
//! ([retention]) is deleted, batch after batch until nothing is left to delete. Any replica may
//! run it: the deletes skip rows another one has locked.

use std::time::Duration;

use relance_config::RetentionSettings;
use relance_runtime::Clock;
use relance_storage::retention::{purge, Purged, RetentionPeriods};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::SchedulerMetrics;

/// The periods of `settings`.
pub fn periods(settings: &RetentionSettings) -> RetentionPeriods {
    RetentionPeriods {
        deliveries_days: settings.deliveries_days,
        interactions_days: settings.interactions_days,
        processed_events_days: settings.processed_events_days,
        dead_letters_days: settings.dead_letters_days,
    }
}

/// One pass: deletes until a round deletes less than a batch from every table.
///
/// # Errors
/// The storage error of the first failed delete.
pub async fn pass(
    pool: &PgPool,
    settings: &RetentionSettings,
    clock: &dyn Clock,
    metrics: &SchedulerMetrics,
) -> Result<Purged, relance_storage::StorageError> {
    let batch = i64::from(settings.batch_size);
    let mut total = Purged::default();
    loop {
        let round = purge(pool, &periods(settings), clock.now(), batch).await?;
        for (table, deleted) in [
            ("deliveries", round.deliveries),
            ("delivery_attempts", round.delivery_attempts),
            ("interactions", round.interactions),
            ("processed_events", round.processed_events),
            ("dead_letters", round.dead_letters),
        ] {
            metrics.record_retention(table, deleted);
        }
        total.deliveries += round.deliveries;
        total.delivery_attempts += round.delivery_attempts;
        total.interactions += round.interactions;
        total.processed_events += round.processed_events;
        total.dead_letters += round.dead_letters;
        let full = [
            round.deliveries,
            round.interactions,
            round.processed_events,
            round.dead_letters,
        ]
        .iter()
        .any(|deleted| *deleted >= settings.batch_size.into());
        if !full {
            return Ok(total);
        }
    }
}

/// Runs passes until `shutdown`.
pub async fn run(
    pool: PgPool,
    settings: RetentionSettings,
    clock: std::sync::Arc<dyn Clock>,
    metrics: SchedulerMetrics,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(u64::from(settings.interval_minutes) * 60);
    loop {
        match pass(&pool, &settings, clock.as_ref(), &metrics).await {
            Ok(purged) if purged.total() > 0 => {
                tracing::info!(
                    deliveries = purged.deliveries,
                    interactions = purged.interactions,
                    processed_events = purged.processed_events,
                    dead_letters = purged.dead_letters,
                    "Retention: rows past their period deleted."
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "Retention pass failed; retried at the next interval.");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
