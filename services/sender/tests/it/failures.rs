//! What goes wrong: records that are not reminder commands, a provider that refuses our
//! credentials, a provider that does not answer in time. Nothing crashes, nothing is lost,
//! nothing is sent twice.

use std::time::Duration;

use relance_kafka::{EventProducer, OutgoingRecord};
use relance_testkit::{read_topic, wait_for};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    command, counter, deliveries, fresh_settings, pool, postmark_env, publish, seed_invoice,
    settled, spawn_sender, FakePostmark, PARTITIONS,
};

#[tokio::test]
async fn records_that_are_not_reminder_commands_are_dead_lettered_and_the_next_is_sent() {
    let settings = fresh_settings("badinput").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_after_bad", "inv_after_bad").await;
    let producer = EventProducer::new(&settings.kafka, "sender-test").unwrap();
    let task = std::fs::read(
        relance_testkit::repo_root().join("proto/examples/relance.task.create.v1.json"),
    )
    .unwrap();
    for payload in [b"not json at all".to_vec(), task] {
        producer
            .send(&OutgoingRecord {
                topic: settings.kafka.topics.reminders.clone(),
                key: Some(b"cus_after_bad".to_vec()),
                payload,
                headers: vec![],
            })
            .await
            .unwrap();
    }
    publish(
        &settings,
        &[command(
            "cus_after_bad",
            "inv_after_bad",
            "after@example.fr",
        )],
    )
    .await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 1, Duration::from_secs(60)).await;
    assert_eq!(
        rows[0].status, "sent",
        "processing went on past the bad records"
    );
    let dead = read_topic(
        &settings,
        &settings.kafka.topics.dlq,
        PARTITIONS,
        2,
        Duration::from_secs(20),
    )
    .await;
    let mut reasons: Vec<String> = dead
        .iter()
        .filter_map(|record| {
            record
                .header("relance_dlq_reason")
                .map(|value| String::from_utf8_lossy(value).into_owned())
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_json", "unexpected_command"]);
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_sender_commands_total",
            &[("outcome", "dead_lettered")]
        ),
        2.0
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_provider_refusing_our_credentials_pauses_delivery_and_fails_nothing() {
    let settings = fresh_settings("badtoken").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"ErrorCode": 10, "Message": "Bad or missing API token"})),
        )
        .mount(&server)
        .await;
    seed_invoice(&settings, "cus_badtoken", "inv_badtoken").await;
    publish(
        &settings,
        &[command(
            "cus_badtoken",
            "inv_badtoken",
            "badtoken@example.fr",
        )],
    )
    .await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let pool = pool(&settings);
    let row = wait_for(
        Duration::from_secs(60),
        "the configuration error to be recorded",
        || async {
            deliveries(&pool)
                .await
                .into_iter()
                .find(|row| row.error_code.as_deref() == Some("10"))
        },
    )
    .await;
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("pending", 0),
        "waiting, and not counted as an attempt"
    );
    let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = $1")
        .bind(&settings.kafka.topics.dlq)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        dead_letters, 0,
        "a configuration error is not the command's fault"
    );
    let (_, metrics) = sender.get("/metrics").await;
    assert!(
        counter(
            &metrics,
            "relance_provider_circuit_open_total",
            &[("provider", "postmark"), ("cause", "config")]
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "relance_reminders_failed_total", &[]),
        0.0
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_timeout_is_reconciled_with_postmark_and_never_sent_twice() {
    let settings = fresh_settings("timeout").await;
    let fake = FakePostmark {
        delay: Duration::from_secs(2),
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_timeout", "inv_timeout").await;
    publish(
        &settings,
        &[command("cus_timeout", "inv_timeout", "timeout@example.fr")],
    )
    .await;
    let mut env = postmark_env(&server.uri());
    env.push((
        "RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS",
        "500".into(),
    ));
    let mut sender = spawn_sender(&settings, &env).await;
    let rows = settled(&pool(&settings), 1, Duration::from_secs(60)).await;
    assert_eq!(rows[0].status, "sent", "{rows:?}");
    assert_eq!(
        fake.accepted_counts().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_delivery_reconciliations_total",
            &[("result", "found")]
        ),
        1.0,
        "{metrics}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn an_unknown_outcome_at_a_provider_that_cannot_be_searched_goes_to_a_person() {
    let settings = fresh_settings("unknown").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("X-Message-Id", "late")
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    seed_invoice(&settings, "cus_unknown", "inv_unknown").await;
    publish(
        &settings,
        &[command("cus_unknown", "inv_unknown", "unknown@example.fr")],
    )
    .await;
    let env = vec![
        (
            "RELANCE__SENDER__PROVIDERS__SENDGRID__KIND",
            "sendgrid".to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SENDGRID__BASE_URL",
            server.uri(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SENDGRID__API_KEY",
            "SG.test-key".into(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__SENDGRID__TIMEOUT_MS",
            "500".into(),
        ),
        (
            "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER",
            "sendgrid".into(),
        ),
    ];
    let mut sender = spawn_sender(&settings, &env).await;
    let pool = pool(&settings);
    let rows = settled(&pool, 1, Duration::from_secs(60)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].error_code.as_deref()),
        ("unknown", Some("outcome_unknown"))
    );
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1,
        "not sent again"
    );
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = $1")
        .bind(&settings.kafka.topics.tasks)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tasks, 1, "a person is asked to check");
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
