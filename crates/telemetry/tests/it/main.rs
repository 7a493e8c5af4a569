#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relance_telemetry::{serve_ops, CheckFuture, Metrics, OpsServer, Readiness, ReadinessCheck};
use tokio_util::sync::CancellationToken;

struct Switch {
    name: &'static str,
    up: Arc<AtomicBool>,
    delay: Duration,
}

impl ReadinessCheck for Switch {
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> CheckFuture {
        let up = self.up.load(Ordering::SeqCst);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if up {
                Ok(())
            } else {
                Err("switched off".to_string())
            }
        })
    }
}

async fn start(checks: Vec<Switch>) -> (OpsServer, Readiness, CancellationToken) {
    let metrics = Metrics::new("test").expect("metrics");
    let mut readiness = Readiness::new(metrics.clone(), Duration::from_millis(300));
    for check in checks {
        readiness = readiness.with_check(Arc::new(check));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let server = serve_ops(listener, metrics, readiness.clone(), shutdown.clone()).expect("serve");
    (server, readiness, shutdown)
}

async fn get(server: &OpsServer, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", server.local_addr()))
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let (server, _, _) = start(vec![]).await;
    assert_eq!(get(&server, "/healthz").await, (200, "ok\n".to_string()));
}

#[tokio::test]
async fn readyz_follows_its_checks_and_reports_each() {
    let database = Arc::new(AtomicBool::new(true));
    let (server, _, _) = start(vec![
        Switch {
            name: "database",
            up: database.clone(),
            delay: Duration::ZERO,
        },
        Switch {
            name: "kafka",
            up: Arc::new(AtomicBool::new(true)),
            delay: Duration::ZERO,
        },
    ])
    .await;
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""database":"ok""#), "{body}");

    database.store(false, Ordering::SeqCst);
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains(r#""database":"switched off""#), "{body}");
    assert!(body.contains(r#""kafka":"ok""#), "{body}");

    let (_, metrics) = get(&server, "/metrics").await;
    assert!(
        metrics.contains(r#"relance_readiness_check_up{check="database"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"relance_readiness_check_up{check="kafka"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_check_that_hangs_makes_readyz_fail_within_the_timeout() {
    let (server, _, _) = start(vec![Switch {
        name: "slow",
        up: Arc::new(AtomicBool::new(true)),
        delay: Duration::from_secs(30),
    }])
    .await;
    let started = std::time::Instant::now();
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("no answer within 300 ms"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_draining_service_is_not_ready_but_alive() {
    let (server, readiness, _) = start(vec![]).await;
    readiness.set_draining();
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    assert_eq!(get(&server, "/healthz").await.0, 200);
}

#[tokio::test]
async fn metrics_expose_build_and_process_information() {
    let (server, _, _) = start(vec![]).await;
    let (status, body) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"relance_build_info{git_sha="#), "{body}");
    assert!(body.contains(r#"service="test""#), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
}

#[tokio::test]
async fn the_server_stops_when_its_token_is_cancelled() {
    let (server, _, shutdown) = start(vec![]).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.stopped())
        .await
        .expect("stops in time")
        .expect("stops cleanly");
}
