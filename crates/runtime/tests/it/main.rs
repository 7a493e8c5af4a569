//! The shared lifecycle, driven in-process with stand-in services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

use std::time::Duration;

use relance_runtime::{Application, BoxError, Service, ServiceContext, ServiceName};
use relance_testkit::{create_unique_database, free_port, test_settings};

struct Stubborn;

impl Service for Stubborn {
    const NAME: ServiceName = ServiceName::Scheduler;
    async fn run(_context: ServiceContext) -> Result<(), BoxError> {
        // Ignores shutdown, like work stuck on a dependency.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

struct Failing;

impl Service for Failing {
    const NAME: ServiceName = ServiceName::Scheduler;
    async fn run(_context: ServiceContext) -> Result<(), BoxError> {
        Err("the policy file is unreadable".into())
    }
}

struct Polite;

impl Service for Polite {
    const NAME: ServiceName = ServiceName::Scheduler;
    async fn run(context: ServiceContext) -> Result<(), BoxError> {
        context.shutdown.cancelled().await;
        Ok(())
    }
}

async fn settings() -> relance_config::Settings {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.runtime.shutdown_timeout_ms = 500;
    settings
}

#[tokio::test]
async fn work_that_does_not_stop_is_abandoned_after_the_shutdown_timeout() {
    let application = Application::<Stubborn>::build(settings().await)
        .await
        .expect("builds");
    let shutdown = application.shutdown_token();
    let running = tokio::spawn(application.run_until_stopped());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "waited for the work first"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "then abandoned it: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_failing_service_makes_the_run_fail() {
    let application = Application::<Failing>::build(settings().await)
        .await
        .expect("builds");
    let result = tokio::time::timeout(Duration::from_secs(5), application.run_until_stopped())
        .await
        .expect("stops");
    let error = result.expect_err("the failure propagates");
    let cause = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("policy file is unreadable"),
        "{error}: {cause}"
    );
}

#[tokio::test]
async fn readyz_names_the_broker_when_it_is_unreachable() {
    let mut settings = settings().await;
    settings.kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    let application = Application::<Polite>::build(settings)
        .await
        .expect("builds");
    let url = format!("http://{}/readyz", application.ops_address());
    let response = reqwest::get(&url).await.expect("readyz answers");
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.expect("body");
    assert!(body.contains(r#""database":"ok""#), "{body}");
    assert!(!body.contains(r#""kafka":"ok""#), "{body}");
    application.shutdown_token().cancel();
}

#[tokio::test]
async fn a_draining_service_reports_not_ready_before_it_stops() {
    struct Slow;
    impl Service for Slow {
        const NAME: ServiceName = ServiceName::Scheduler;
        async fn run(context: ServiceContext) -> Result<(), BoxError> {
            context.shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(())
        }
    }
    let application = Application::<Slow>::build(settings().await)
        .await
        .expect("builds");
    let url = format!("http://{}/readyz", application.ops_address());
    let shutdown = application.shutdown_token();
    let running = tokio::spawn(application.run_until_stopped());
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = reqwest::get(&url)
        .await
        .expect("still serving")
        .text()
        .await
        .expect("body");
    assert!(body.contains("draining"), "{body}");
    running.await.expect("task").expect("clean stop");
}
