//! The scheduler: applies each tenant's dunning policy to open invoices, decides the reminders
//! and tasks that are due, and publishes them through the outbox to `relance.reminders` and
//! `relance.tasks`; reminders that need approval wait for a person, who decides through the
//! admin API (and `relancectl`).

pub mod admin;
mod behaviour;
pub mod commands;
pub mod dead_letters;
mod extract;
pub mod metrics;
pub mod planner;
pub mod policies;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use relance_policy::PolicyError;
use relance_runtime::{BoxError, Clock, OutboxMetrics, Service, ServiceContext, ServiceName};
use relance_storage::scheduling::PolicyRecorded;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::metrics::SchedulerMetrics;
use crate::planner::{InFlight, Scheduler};
use crate::policies::PolicySet;

/// Policies that cannot be used: every problem, each naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid dunning policies:\n{}", .0.iter().map(|error| format!("  - {error}")).collect::<Vec<_>>().join("\n"))]
pub struct PolicyLoadError(pub Vec<PolicyError>);

/// Why the admin tokens cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("scheduler.admin_tokens_file = {file:?}: {reason}")]
pub struct TokensError {
    pub file: String,
    pub reason: String,
}

/// Why the templates (to check approvals edited by people) cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("sender.templates_dir = {dir:?}: {reason} (the scheduler checks edited approvals against the templates)")]
pub struct TemplatesError {
    pub dir: String,
    pub reason: String,
}

/// The scheduler service.
pub struct SchedulerService;

impl Service for SchedulerService {
    const NAME: ServiceName = ServiceName::Scheduler;

    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        let settings = context.settings.clone();
        let policies =
            Arc::new(PolicySet::load(&settings.scheduler.policies_dir).map_err(PolicyLoadError)?);
        for (tenant, policy) in policies.all() {
            tracing::info!(tenant, policy = %policy.policy, version = policy.version, "Policy loaded.");
            for warning in relance_policy::warnings(policy) {
                tracing::warn!(tenant, policy = %policy.policy, warning = %warning, "The policy is valid but will not do all it says (relancectl policy check).");
            }
        }
        let tokens = relance_config::read_admin_tokens(&settings.scheduler.admin_tokens_file)
            .map_err(|reason| TokensError {
                file: settings.scheduler.admin_tokens_file.clone(),
                reason,
            })?;
        // A policy whose content changed since the last start applies to the open invoices it
        // governs at once: they are planned again in the next rounds. In the background, so
        // that a scheduler whose database is away still starts (and says it is not ready).
        let replan_task = tokio::spawn(replan_changed_policies(
            context.pool.clone(),
            policies.clone(),
            context.clock.clone(),
            context.shutdown.clone(),
        ));
        let registry = context.metrics.registry();
        let metrics = SchedulerMetrics::register(registry)?;
        let metrics_for_retention = metrics.clone();
        let relay = context.outbox_relay(OutboxMetrics::register(registry)?);
        let clock = context.clock.clone();
        let scheduler = Scheduler {
            pool: context.pool.clone(),
            policies: policies.clone(),
            settings: settings.scheduler.clone(),
            topics: settings.kafka.topics.clone(),
            metrics: metrics.clone(),
            relay: relay.waker(),
            in_flight: InFlight::default(),
        };
        let listener =
            tokio::net::TcpListener::bind(&settings.scheduler.admin_listen_address).await?;
        let address = listener.local_addr()?;
        let templates =
            admin::Templates::load(&settings.sender).map_err(|error| TemplatesError {
                dir: settings.sender.templates_dir.clone(),
                reason: error.to_string(),
            })?;
        let admin = admin::router(AdminState {
            pool: context.pool.clone(),
            tokens: Arc::new(tokens),
            topics: settings.kafka.topics.clone(),
            clock: clock.clone(),
            metrics,
            relay: relay.waker(),
            policies,
            templates: Arc::new(templates),
        });
        let admin_shutdown = context.shutdown.clone();
        let admin_task = tokio::spawn(async move {
            axum::serve(listener, admin)
                .with_graceful_shutdown(async move { admin_shutdown.cancelled().await })
                .await
        });
        tracing::info!(address = %address, "Serving the admin API.");
        let relay_shutdown = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));
        let retention_task = tokio::spawn(retention::run(
            context.pool.clone(),
            settings.retention.clone(),
            clock.clone(),
            metrics_for_retention,
            context.shutdown.clone(),
        ));

        // Workers claim their own customers (SKIP LOCKED), as replicas do: while one plans,
        // another waits for PostgreSQL.
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..settings.scheduler.planning_workers.max(1) {
            let scheduler = scheduler.clone();
            let clock = clock.clone();
            let shutdown = context.shutdown.clone();
            workers.spawn(async move { run_ticks(&scheduler, clock.as_ref(), &shutdown).await });
        }
        let mut result = Ok(());
        while let Some(ended) = workers.join_next().await {
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(error),
                Err(panicked) => result = Err(Box::new(panicked) as BoxError),
            }
        }
        relay_shutdown.cancel();
        let _ = relay_task.await;
        let _ = admin_task.await;
        let _ = retention_task.await;
        let _ = replan_task.await;
        result
    }
}

/// Records every policy's fingerprint and re-plans the invoices of those that changed
/// ([`policies::replan_changed`]), retrying every few seconds while the database cannot be
/// reached, until it is done or the service stops.
async fn replan_changed_policies(
    pool: sqlx::PgPool,
    policies: Arc<PolicySet>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        match policies::replan_changed(&pool, &policies, clock.now()).await {
            Ok(outcomes) => {
                for (key, recorded) in outcomes {
                    match recorded {
                        PolicyRecorded::Changed { invoices_marked } => {
                            tracing::info!(policy = %key, invoices_marked, "The policy changed since the last start; its open invoices are planned again now.")
                        }
                        PolicyRecorded::First => {
                            tracing::info!(policy = %key, "First start of this deployment with policies; their fingerprints are recorded.")
                        }
                        PolicyRecorded::Unchanged => {}
                    }
                }
                return;
            }
            Err(error) => {
                tracing::warn!(error = ?relance_telemetry::ErrorChain(&error), "The policies' fingerprints cannot be recorded yet; retrying.");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Plans due customers every `tick_interval_ms` until shutdown; a full batch is followed at
/// once by another.
async fn run_ticks(
    scheduler: &Scheduler,
    clock: &dyn Clock,
    shutdown: &CancellationToken,
) -> Result<(), BoxError> {
    let interval = Duration::from_millis(scheduler.settings.tick_interval_ms);
    loop {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match scheduler.tick(clock.now()).await {
                Ok(report) if report.full => continue,
                Ok(report) => {
                    if report.customers > 0 {
                        tracing::debug!(
                            customers = report.customers,
                            queued = report.queued,
                            awaiting_approval = report.awaiting_approval,
                            escalations = report.escalations,
                            "Planned."
                        );
                    }
                    break;
                }
                Err(planner::SchedulerError::Storage(error)) if error.is_transient() => {
                    tracing::warn!(error = %error, "Planning failed for a transient reason; retrying.");
                    break;
                }
                Err(error) => {
                    // Never exit for one customer's data: plan them one by one and set aside
                    // those that fail alone.
                    tracing::warn!(error = ?relance_telemetry::ErrorChain(&error), "A planning round failed for good; planning its customers one by one.");
                    if let Err(error) = scheduler.tick_isolating(clock.now()).await {
                        tracing::warn!(error = ?relance_telemetry::ErrorChain(&error), "Planning one by one failed; retrying later.");
                    }
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
