//! PostgreSQL stops mid-stream and comes back: consumption pauses, then everything is applied
//! once.

use std::time::Duration;

use relance_testkit::{wait_for, TempPostgres};

use crate::helpers::{
    assert_database_matches_model, fresh_settings, replay_through_the_model, today, TestIngestor,
    World,
};
use crate::simulator::stream;

#[tokio::test]
async fn a_database_outage_pauses_consumption_and_everything_is_applied_once_after_it() {
    let database = TempPostgres::start();
    let mut settings = fresh_settings("outage").await;
    settings.database.port = database.port();
    settings.database.database_name = "postgres".into();
    let ingestor = TestIngestor::spawn_on(settings).await;
    let world = &ingestor.world;

    let events = stream(11, "acme", 60);
    let (first_half, second_half) = events.split_at(events.len() / 2);
    let unique: std::collections::HashSet<&str> = events
        .iter()
        .map(|event| event.value["id"].as_str().unwrap())
        .collect();
    world.publish(first_half).await;
    world.wait_processed(10, Duration::from_secs(60)).await;

    database.stop();
    world.publish(second_half).await;
    wait_for(
        Duration::from_secs(60),
        "the ingestor to retry against the stopped database",
        || async {
            let metrics = World::metrics_text(ingestor.ops).await;
            let retries = metrics
                .lines()
                .find(|line| line.starts_with("relance_kafka_batch_retries_total"))
                .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            (retries >= 1.0).then_some(())
        },
    )
    .await;
    let (status, _) = {
        let response = reqwest::get(format!("http://{}/readyz", ingestor.ops))
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 503, "not ready while the database is away");

    database.resume();
    world
        .wait_processed(unique.len(), Duration::from_secs(120))
        .await;
    let model = replay_through_the_model(&events, today());
    assert_database_matches_model(world, &model, today()).await;
    ingestor.stop().await;
}
