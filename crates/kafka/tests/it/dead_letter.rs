use std::time::Duration;

use relance_contracts::dead_letter::{DeadLetterRecordV1, EventIdentity};
use relance_contracts::schema::Schemas;
use relance_contracts::Id;
use relance_kafka::{ConsumedRecord, DeadLetter, DeadLetterWriter};
use relance_testkit::wait_for;

use crate::{fixture, group_name, start_consumer, Recorder};

#[tokio::test]
async fn a_dead_letter_keeps_the_original_and_says_why_and_where_in_body_and_headers() {
    let fixture = fixture("dlq", 1).await;
    let original = ConsumedRecord {
        topic: fixture.topics.invoices.clone(),
        partition: 2,
        offset: 18_231,
        key: Some(b"cus_42".to_vec()),
        payload: Some(b"\xff\x00 not json".to_vec()),
        headers: vec![
            (
                "content-type".into(),
                Some(b"application/cloudevents+json".to_vec()),
            ),
            ("empty".into(), None),
        ],
        timestamp_ms: Some(1_793_610_900_000),
    };
    let writer = DeadLetterWriter::new(
        fixture.producer.clone(),
        fixture.topics.dlq.clone(),
        "ingestor",
    );
    writer
        .write(
            &original,
            &DeadLetter {
                reason: "invalid_json",
                detail: "The record value is not UTF-8 JSON.".into(),
                identity: Some(EventIdentity {
                    id: None,
                    event_type: None,
                    tenant: Some(Id::parse("acme").unwrap()),
                }),
            },
        )
        .await
        .expect("dead letter written");

    let recorder = Recorder::default();
    let consumer = start_consumer(
        &fixture,
        &group_name("dlq-reader"),
        &[&fixture.topics.dlq],
        recorder.clone(),
    );
    let dead = wait_for(Duration::from_secs(30), "the dead letter", || {
        let recorder = recorder.clone();
        async move { recorder.records().into_iter().next() }
    })
    .await;
    consumer.stop().await.expect("stop");

    // The original key and headers are kept, and every relance_dlq_* header is right.
    assert_eq!(dead.key.as_deref(), Some(&b"cus_42"[..]));
    assert_eq!(
        dead.header("content-type"),
        Some(&b"application/cloudevents+json"[..])
    );
    assert!(dead
        .headers
        .iter()
        .any(|(key, value)| key == "empty" && value.is_none()));
    assert_eq!(
        dead.header("relance_dlq_reason"),
        Some(&b"invalid_json"[..])
    );
    assert_eq!(
        dead.header("relance_dlq_source_topic"),
        Some(fixture.topics.invoices.as_bytes())
    );
    assert_eq!(dead.header("relance_dlq_source_partition"), Some(&b"2"[..]));
    assert_eq!(
        dead.header("relance_dlq_source_offset"),
        Some(&b"18231"[..])
    );
    assert_eq!(dead.header("relance_dlq_service"), Some(&b"ingestor"[..]));
    assert!(dead.header("relance_dlq_failed_at").is_some());

    // The body follows the dead-letter schema and gives back the original bytes.
    let json: serde_json::Value = serde_json::from_slice(dead.payload.as_deref().unwrap()).unwrap();
    Schemas::global()
        .validate_dead_letter(&json)
        .expect("body meets its schema");
    let body: DeadLetterRecordV1 = serde_json::from_value(json).unwrap();
    assert_eq!(body.reason.as_str(), "invalid_json");
    assert_eq!(body.source.topic, fixture.topics.invoices);
    assert_eq!(body.source.partition, 2);
    assert_eq!(body.source.offset, 18_231);
    assert_eq!(body.original.value_bytes().unwrap(), original.payload);
    assert_eq!(body.original.key_bytes().unwrap(), original.key);
    assert_eq!(body.original.timestamp_ms, Some(1_793_610_900_000));
    assert_eq!(
        body.event
            .and_then(|event| event.tenant)
            .map(|tenant| tenant.to_string()),
        Some("acme".into())
    );
}
