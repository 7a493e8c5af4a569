//! A scheduler per test, driven tick by tick with the time the test chooses.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use relance_config::{ServiceName, Settings};
use relance_scheduler::metrics::SchedulerMetrics;
use relance_scheduler::planner::Scheduler;
use relance_scheduler::policies::PolicySet;
use relance_storage::scheduling::ReminderRow;
use relance_testkit::{create_unique_database, create_unique_topics, test_settings, unique_name};
use sqlx::PgPool;

pub const PARTITIONS: i32 = 4;

pub async fn fresh_settings(label: &str) -> Settings {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, label, PARTITIONS).await;
    settings.ingestor.group_id = unique_name(label);
    settings
}

/// A scheduler on `settings`, with its own pool (as a replica has).
pub fn scheduler(settings: &Settings) -> Scheduler {
    let registry = prometheus::Registry::new();
    Scheduler {
        pool: relance_storage::lazy_pool(&settings.database, "test-scheduler"),
        policies: Arc::new(PolicySet::load(&settings.scheduler.policies_dir).expect("policies")),
        settings: settings.scheduler.clone(),
        topics: settings.kafka.topics.clone(),
        metrics: SchedulerMetrics::register(&registry).expect("metrics"),
        relay: Arc::new(tokio::sync::Notify::new()),
        in_flight: relance_scheduler::planner::InFlight::default(),
    }
}

pub async fn reminders(pool: &PgPool) -> Vec<ReminderRow> {
    sqlx::query_as(
        "SELECT reminder_id, idempotency_key, tenant, customer_id, invoice_ids, kind, trigger, step_id, channel,
                segment, template, variant, experiment, status, scheduled_for, policy_id, policy_version, topic,
                command, decided_by, decided_at, decision_note
         FROM reminders ORDER BY scheduled_for, reminder_id",
    )
    .fetch_all(pool)
    .await
    .expect("reminders")
}

pub async fn next_action_of(pool: &PgPool, invoice_id: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT next_action_at FROM invoices WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(pool)
        .await
        .expect("invoice")
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}
