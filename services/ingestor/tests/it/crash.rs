//! SIGKILL in the middle of a stream: after a restart nothing is lost and nothing is applied
//! twice.

use std::path::Path;
use std::time::Duration;

use relance_testkit::{service_env, settings_overrides, ServiceProcess};

use crate::helpers::{
    assert_database_matches_model, fresh_settings, replay_through_the_model, today, World,
};
use crate::simulator::stream;

fn overrides(world: &World, epoch: &str) -> Vec<(&'static str, String)> {
    let mut overrides = settings_overrides(&world.settings);
    // Small batches, so the kill lands between many commits.
    overrides.push(("RELANCE__INGESTOR__BATCH_MAX_MESSAGES", "50".into()));
    // Both processes on one simulated clock at noon of `today()` (noon in Paris too, where the
    // stream's customers live): on the real clock the model's date and the customers' local
    // date differed for an hour or two around midnight.
    overrides.push((
        "RELANCE__RUNTIME__CLOCK__START",
        format!("{}T11:00:00Z", today()),
    ));
    overrides.push(("RELANCE__RUNTIME__CLOCK__EPOCH", epoch.to_string()));
    overrides
}

#[tokio::test]
async fn a_sigkilled_ingestor_loses_nothing_and_applies_nothing_twice_after_restart() {
    let world = World::on(fresh_settings("crash").await);
    let events = stream(7, "acme", 120);
    let unique: std::collections::HashSet<&str> = events
        .iter()
        .map(|event| event.value["id"].as_str().unwrap())
        .collect();
    let binary = Path::new(env!("CARGO_BIN_EXE_ingestor"));
    let epoch = chrono::Utc::now().to_rfc3339();

    let mut first = ServiceProcess::spawn(binary, service_env(&overrides(&world, &epoch))).await;
    world.publish(&events).await;
    let quarter = unique.len() / 4;
    world
        .wait_processed(quarter, Duration::from_secs(120))
        .await;
    let status = first.signal_and_wait("KILL", Duration::from_secs(10)).await;
    assert!(!status.success(), "killed, not stopped: {status:?}");
    let at_kill = world.processed_count().await as usize;
    assert!(
        at_kill < unique.len(),
        "killed mid-stream ({at_kill} of {})",
        unique.len()
    );

    let mut second = ServiceProcess::spawn(binary, service_env(&overrides(&world, &epoch))).await;
    world
        .wait_processed(unique.len(), Duration::from_secs(240))
        .await;
    // Let a redelivered tail be absorbed before comparing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.processed_count().await as usize,
        unique.len(),
        "each event recorded once"
    );

    let model = replay_through_the_model(&events, today());
    assert_database_matches_model(&world, &model, today()).await;
    let status = second
        .signal_and_wait("TERM", Duration::from_secs(10))
        .await;
    assert!(status.success(), "{status:?}");
}
