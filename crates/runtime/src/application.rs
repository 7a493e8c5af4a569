//! Building and running a service: the part of the lifecycle tests drive in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relance_config::{ServiceName, Settings};
use relance_kafka::EventProducer;
use relance_telemetry::{serve_ops, Metrics, OpsServer, Readiness};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{DatabaseCheck, KafkaCheck};
use crate::clock::Clock;
use crate::BoxError;

/// What a service's own work gets from the runtime.
#[derive(Clone)]
pub struct ServiceContext {
    pub settings: Settings,
    /// Connects lazily; operations fail while the database is down and work again after.
    pub pool: PgPool,
    pub producer: EventProducer,
    /// The service's registry: register the service's metrics here.
    pub metrics: Metrics,
    /// Cancelled when the service must stop: stop taking work, finish or abandon what is in
    /// hand, commit what was processed, return.
    pub shutdown: CancellationToken,
    /// The time, injected (the system clock outside tests).
    pub clock: Arc<dyn Clock>,
    /// Whether the service manages to publish: give it to the service's outbox relay; the
    /// readiness check `publishing` reads it.
    pub publish_health: crate::outbox_relay::PublishHealth,
    /// Which service this is.
    pub service: ServiceName,
}

impl ServiceContext {
    /// The relay of this service's outbox, reporting to its readiness.
    pub fn outbox_relay(&self, metrics: crate::outbox_relay::OutboxMetrics) -> crate::OutboxRelay {
        crate::OutboxRelay::new(
            self.pool.clone(),
            &application_name(self.service),
            self.producer.clone(),
            self.settings.outbox.clone(),
            metrics.at_zero_for(&[
                &self.settings.kafka.topics.events,
                &self.settings.kafka.topics.reminders,
                &self.settings.kafka.topics.tasks,
                &self.settings.kafka.topics.dlq,
            ]),
        )
        .with_health(self.publish_health.clone())
    }
}

/// The application name of a service's database connections (it shows in
/// `pg_stat_activity`, and tags the outbox records the service writes).
pub fn application_name(service: ServiceName) -> String {
    format!("relance-{}", service.as_str())
}

/// A relance service: its name and its work.
pub trait Service: Send + 'static {
    const NAME: ServiceName;

    /// Runs the service's work until `context.shutdown` is cancelled and in-flight work is
    /// finished or safely abandoned. Returning an error stops the process with a failure.
    fn run(context: ServiceContext) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Why a service could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("binding the operational endpoints to {address}")]
    BindOps {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registering metrics")]
    Metrics(#[source] relance_telemetry::MetricsError),
    #[error("creating the Kafka producer")]
    Producer(#[source] relance_kafka::KafkaError),
    #[error("applying migrations at start (database.migrate_on_start)")]
    Migrate(#[source] relance_storage::StorageError),
    #[error("the service failed")]
    Service(#[source] BoxError),
    #[error("the service stopped by itself before it was asked to")]
    StoppedUnexpectedly,
}

/// A built service, ready to run: connections configured, operational endpoints serving.
pub struct Application<S: Service> {
    context: ServiceContext,
    readiness: Readiness,
    ops: OpsServer,
    ops_shutdown: CancellationToken,
    _service: std::marker::PhantomData<S>,
}

impl<S: Service> Application<S> {
    /// Connects (lazily) to PostgreSQL and Kafka, applies migrations if
    /// `database.migrate_on_start`, and starts serving the operational endpoints.
    ///
    /// # Errors
    /// [`RuntimeError`] when the ops address cannot be bound, a client cannot be created, or
    /// the start-up migrations fail.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let clock = crate::clock::from_settings(&settings.runtime.clock);
        Self::build_with_clock(settings, clock).await
    }

    /// [`Application::build`] with a clock of the caller's choice.
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RuntimeError> {
        let service = S::NAME.as_str();
        let metrics = Metrics::new(service).map_err(RuntimeError::Metrics)?;
        let pool = relance_storage::lazy_pool(&settings.database, &application_name(S::NAME));
        let producer =
            EventProducer::new(&settings.kafka, service).map_err(RuntimeError::Producer)?;
        if settings.database.migrate_on_start {
            tracing::info!("Applying database migrations (database.migrate_on_start).");
            relance_storage::migrate(&pool)
                .await
                .map_err(RuntimeError::Migrate)?;
        }
        let readiness = Readiness::new(
            metrics.clone(),
            Duration::from_millis(settings.runtime.readiness_timeout_ms),
        )
        .with_check(Arc::new(DatabaseCheck(pool.clone())))
        .with_check(Arc::new(KafkaCheck {
            producer: producer.clone(),
            timeout: Duration::from_millis(settings.runtime.readiness_timeout_ms),
        }));
        let publish_health = crate::outbox_relay::PublishHealth::default();
        let readiness = readiness.with_check(Arc::new(crate::outbox_relay::PublishingCheck {
            health: publish_health.clone(),
            limit: Duration::from_millis(settings.outbox.unready_after_ms),
        }));
        let address = settings.ops_listen_address(S::NAME).to_string();
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| RuntimeError::BindOps {
                address: address.clone(),
                source,
            })?;
        let ops_shutdown = CancellationToken::new();
        let ops = serve_ops(
            listener,
            metrics.clone(),
            readiness.clone(),
            ops_shutdown.clone(),
        )
        .map_err(|source| RuntimeError::BindOps { address, source })?;
        tracing::info!(address = %ops.local_addr(), "Serving /metrics, /healthz and /readyz.");
        Ok(Self {
            context: ServiceContext {
                settings,
                pool,
                producer,
                metrics,
                shutdown: CancellationToken::new(),
                clock,
                publish_health,
                service: S::NAME,
            },
            readiness,
            ops,
            ops_shutdown,
            _service: std::marker::PhantomData,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn ops_address(&self) -> SocketAddr {
        self.ops.local_addr()
    }

    /// Cancel it to stop the service (what SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.context.shutdown.clone()
    }

    /// The service's context (settings, pool, producer, metrics).
    pub fn context(&self) -> &ServiceContext {
        &self.context
    }

    /// Runs the service until it is asked to stop, then stops within
    /// `runtime.shutdown_timeout_ms`: readiness turns to draining, the service finishes or
    /// abandons its in-flight work, the producer flushes, the endpoints close.
    ///
    /// # Errors
    /// [`RuntimeError::Service`] when the service's work failed, and
    /// [`RuntimeError::StoppedUnexpectedly`] when it returned without being asked to.
    pub async fn run_until_stopped(self) -> Result<(), RuntimeError> {
        let shutdown = self.context.shutdown.clone();
        let shutdown_timeout =
            Duration::from_millis(self.context.settings.runtime.shutdown_timeout_ms);
        let pool = self.context.pool.clone();
        let producer = self.context.producer.clone();
        let mut work = tokio::spawn(S::run(self.context));

        let outcome = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            finished = &mut work => Some(finished),
        };
        let result = match outcome {
            Some(finished) => {
                // The work may have returned because shutdown was requested in the meantime.
                let asked_to_stop = shutdown.is_cancelled();
                shutdown.cancel();
                match finished {
                    Ok(Ok(())) if asked_to_stop => Ok(()),
                    Ok(Ok(())) => Err(RuntimeError::StoppedUnexpectedly),
                    Ok(Err(error)) => Err(RuntimeError::Service(error)),
                    Err(join_error) => Err(RuntimeError::Service(Box::new(join_error))),
                }
            }
            None => {
                let deadline = Instant::now() + shutdown_timeout;
                tracing::info!(
                    timeout_ms = shutdown_timeout.as_millis() as u64,
                    "Shutting down: draining in-flight work."
                );
                self.readiness.set_draining();
                match tokio::time::timeout_at(deadline, &mut work).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(error))) => Err(RuntimeError::Service(error)),
                    Ok(Err(join_error)) => Err(RuntimeError::Service(Box::new(join_error))),
                    Err(_) => {
                        // Uncommitted work is redelivered after restart; effects are idempotent.
                        tracing::warn!("In-flight work did not finish within the shutdown timeout; abandoning it.");
                        work.abort();
                        Ok(())
                    }
                }
            }
        };
        let flush_budget = Duration::from_millis(500);
        let flushed = tokio::task::spawn_blocking(move || producer.flush(flush_budget)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("Some produced records were not acknowledged before exit.");
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), pool.close()).await;
        self.ops_shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ops.stopped()).await;
        if result.is_ok() {
            tracing::info!("Stopped.");
        }
        result
    }
}
