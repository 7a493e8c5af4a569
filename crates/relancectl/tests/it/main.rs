//! relancectl against a real admin API (the scheduler's), on a real database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod approvals;
mod behaviour;
mod conformance;
mod hostile_ids;
mod policy;
mod tenancy;

/// The scheduler's admin API on `settings`, on a free port, with a clock at `now`; its URL.
pub async fn serve_admin_api(
    settings: &relance_config::Settings,
    pool: sqlx::PgPool,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = relance_scheduler::admin::router(relance_scheduler::admin::AdminState {
        pool,
        tokens: Arc::new(
            relance_config::read_admin_tokens(&settings.scheduler.admin_tokens_file).unwrap(),
        ),
        topics: settings.kafka.topics.clone(),
        clock: Arc::new(relance_runtime::ManualClock::new(now)),
        metrics: relance_scheduler::metrics::SchedulerMetrics::register(
            &prometheus::Registry::new(),
        )
        .unwrap(),
        relay: Arc::new(tokio::sync::Notify::new()),
        policies: Arc::new(
            relance_scheduler::policies::PolicySet::load(&settings.scheduler.policies_dir).unwrap(),
        ),
        templates: Arc::new(relance_scheduler::admin::Templates::load(&settings.sender).unwrap()),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
