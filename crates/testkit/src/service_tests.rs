//! The lifecycle every service binary must honour, as tests each service runs against its own
//! binary with [`service_lifecycle_tests!`](crate::service_lifecycle_tests).

use std::path::Path;
use std::time::Duration;

use relance_config::ServiceName;

use crate::{
    create_unique_database, run_to_completion, service_env, test_settings, wait_for,
    ServiceProcess, TempPostgres,
};

/// Generates the lifecycle tests for a service binary.
#[macro_export]
macro_rules! service_lifecycle_tests {
    ($binary:expr, $service:expr) => {
        use $crate::service_tests as lifecycle;

        #[tokio::test]
        async fn answers_metrics_and_readyz_then_exits_0_on_sigterm() {
            lifecycle::serves_then_stops_on_sigterm(std::path::Path::new($binary), $service).await;
        }

        #[tokio::test]
        async fn exits_0_on_sigint() {
            lifecycle::stops_on_sigint(std::path::Path::new($binary), $service).await;
        }

        #[tokio::test]
        async fn readyz_turns_not_ready_while_its_database_is_away() {
            lifecycle::not_ready_without_database(std::path::Path::new($binary), $service).await;
        }

        #[tokio::test]
        async fn a_bad_configuration_value_stops_it_with_a_message_naming_the_key() {
            lifecycle::rejects_bad_configuration(std::path::Path::new($binary), $service).await;
        }

        #[tokio::test]
        async fn migrate_and_check_config_commands_work() {
            lifecycle::runs_commands(std::path::Path::new($binary), $service).await;
        }
    };
}

async fn spawn_with_fresh_database(binary: &Path, service: ServiceName) -> ServiceProcess {
    let settings = create_unique_database(&test_settings(service)).await;
    ServiceProcess::spawn(
        binary,
        service_env(&[(
            "RELANCE__DATABASE__DATABASE_NAME",
            settings.database.database_name,
        )]),
    )
    .await
}

async fn wait_ready(process: &ServiceProcess) {
    wait_for(Duration::from_secs(30), "/readyz to answer 200", || async {
        let (status, _) = process.get("/readyz").await;
        (status == 200).then_some(())
    })
    .await;
}

pub async fn serves_then_stops_on_sigterm(binary: &Path, service: ServiceName) {
    let mut process = spawn_with_fresh_database(binary, service).await;
    assert_eq!(process.get("/healthz").await.0, 200);
    wait_ready(&process).await;
    let (_, body) = process.get("/readyz").await;
    assert!(
        body.contains(r#""database":"ok""#) && body.contains(r#""kafka":"ok""#),
        "{body}"
    );
    let (status, metrics) = process.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(r#"service="{service}""#)),
        "{metrics}"
    );
    assert!(metrics.contains("relance_build_info{"), "{metrics}");
    assert!(
        metrics.contains(r#"relance_readiness_check_up{check="database"} 1"#),
        "{metrics}"
    );

    let started = std::time::Instant::now();
    let status = process
        .signal_and_wait("TERM", Duration::from_secs(10))
        .await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(process
        .logs()
        .iter()
        .any(|line| line.contains("SIGTERM received")));
}

pub async fn stops_on_sigint(binary: &Path, service: ServiceName) {
    let mut process = spawn_with_fresh_database(binary, service).await;
    wait_ready(&process).await;
    let status = process
        .signal_and_wait("INT", Duration::from_secs(10))
        .await;
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

pub async fn not_ready_without_database(binary: &Path, _service: ServiceName) {
    let database = TempPostgres::start();
    let mut process = ServiceProcess::spawn(
        binary,
        service_env(&[
            ("RELANCE__DATABASE__PORT", database.port().to_string()),
            ("RELANCE__DATABASE__DATABASE_NAME", "postgres".to_string()),
        ]),
    )
    .await;
    wait_ready(&process).await;

    database.stop();
    let body = wait_for(Duration::from_secs(30), "/readyz to answer 503", || async {
        let (status, body) = process.get("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(!body.contains(r#""database":"ok""#), "{body}");
    assert!(
        body.contains(r#""kafka":"ok""#),
        "only the database is away: {body}"
    );
    assert_eq!(
        process.get("/healthz").await.0,
        200,
        "alive while not ready"
    );

    database.resume();
    wait_ready(&process).await;
    let status = process
        .signal_and_wait("TERM", Duration::from_secs(10))
        .await;
    assert!(status.success(), "{status:?}");
}

pub async fn rejects_bad_configuration(binary: &Path, service: ServiceName) {
    let address_variable = format!(
        "RELANCE__{}__OPS_LISTEN_ADDRESS",
        service.as_str().to_uppercase()
    );
    let address_key = format!("{service}.ops_listen_address");
    let cases: [(&str, &str, &str); 4] = [
        (
            "RELANCE__KAFKA__SESSION_TIMEOUT_MS",
            "soon",
            "kafka.session_timeout_ms",
        ),
        (
            "RELANCE__DATABASE__MAX_CONNECTIONS",
            "0",
            "database.max_connections",
        ),
        (&address_variable, "nowhere", &address_key),
        (
            "RELANCE__TELEMETRY__LOG_FORMAT",
            "xml",
            "telemetry.log_format",
        ),
    ];
    for (variable, value, key) in cases {
        let (code, _, stderr) =
            run_to_completion(binary, service_env(&[(variable, value.to_string())]), &[]).await;
        assert_eq!(code, Some(2), "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(key),
            "{variable}={value}: the message does not name {key}: {stderr}"
        );
        assert!(
            stderr.contains(value),
            "{variable}={value}: the message does not show the value: {stderr}"
        );
    }
}

pub async fn runs_commands(binary: &Path, service: ServiceName) {
    let (code, stdout, stderr) =
        run_to_completion(binary, service_env(&[]), &["check-config"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");

    let settings = create_unique_database(&test_settings(service)).await;
    let (code, _, stderr) = run_to_completion(
        binary,
        service_env(&[(
            "RELANCE__DATABASE__DATABASE_NAME",
            settings.database.database_name.clone(),
        )]),
        &["migrate"],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
}
