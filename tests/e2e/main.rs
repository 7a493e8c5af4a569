//! The four services as processes, side by side, as `make run` starts them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod dead_letters;
mod emails;
mod lock_order;
mod tracking;
mod tricky_sequence;

use std::time::Duration;

use relance_config::ServiceName;
use relance_e2e::service_binary;
use relance_testkit::{
    create_unique_database, service_env, test_settings, wait_for, ServiceProcess,
};

#[tokio::test]
async fn the_four_services_run_side_by_side_and_stop_cleanly_on_sigterm() {
    let settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    let mut processes = Vec::new();
    for service in ServiceName::ALL {
        let env = service_env(&[(
            "RELANCE__DATABASE__DATABASE_NAME",
            settings.database.database_name.clone(),
        )]);
        processes.push((
            service,
            ServiceProcess::spawn(&service_binary(service.as_str()), env).await,
        ));
    }
    for (service, process) in &processes {
        wait_for(
            Duration::from_secs(30),
            &format!("{service} to be ready"),
            || async { (process.get("/readyz").await.0 == 200).then_some(()) },
        )
        .await;
        let (status, metrics) = process.get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(&format!(r#"service="{service}""#)),
            "{service}: {metrics}"
        );
    }
    for (service, process) in &mut processes {
        let status = process
            .signal_and_wait("TERM", Duration::from_secs(10))
            .await;
        assert!(status.success(), "{service} exited with {status:?}");
    }
}
