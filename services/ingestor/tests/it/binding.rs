//! The CloudEvents Kafka protocol binding: events in binary content mode (attributes in `ce_*`
//! headers, as the CloudEvents SDKs write them) are applied like structured ones, and records
//! whose key is not their event's partition key are applied, counted and logged.

use std::time::Duration;

use relance_kafka::OutgoingRecord;
use serde_json::{json, Value};

use crate::helpers::{TestIngestor, World};
use crate::simulator::envelope;

/// `event` as a binary-mode Kafka record: its data as the value, each attribute a header.
fn binary(topic: &str, key: Option<&str>, event: &Value) -> OutgoingRecord {
    let mut headers = Vec::new();
    for (name, value) in event.as_object().unwrap() {
        match name.as_str() {
            "data" => {}
            "datacontenttype" => headers.push((
                "content-type".to_string(),
                Some(value.as_str().unwrap().as_bytes().to_vec()),
            )),
            _ => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                headers.push((format!("ce_{name}"), Some(text.into_bytes())));
            }
        }
    }
    OutgoingRecord {
        topic: topic.to_string(),
        key: key.map(|key| key.as_bytes().to_vec()),
        payload: serde_json::to_vec(&event["data"]).unwrap(),
        headers,
    }
}

fn structured(topic: &str, key: Option<&str>, event: &Value) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        key: key.map(|key| key.as_bytes().to_vec()),
        payload: serde_json::to_vec(event).unwrap(),
        headers: vec![(
            "content-type".into(),
            Some(b"application/cloudevents+json; charset=utf-8".to_vec()),
        )],
    }
}

#[tokio::test]
async fn binary_mode_events_apply_and_keys_that_risk_ordering_are_counted() {
    let ingestor = TestIngestor::spawn("binding").await;
    let world: &World = &ingestor.world;
    let topics = world.settings.kafka.topics.clone();
    let issued = |invoice: &str, customer: &str| {
        envelope(
            "billing.invoice.issued",
            &format!("iss-{invoice}"),
            "acme",
            customer,
            chrono::Utc::now(),
            json!({
                "invoice_id": invoice, "customer_id": customer, "number": "F-1",
                "issued_on": "2026-11-01", "due_on": "2026-12-01",
                "total": {"amount_minor": 10_000, "currency": "EUR"}
            }),
        )
    };
    let records = [
        // Binary mode, keyed by the customer: as an SDK writes it.
        binary(&topics.invoices, Some("cus_b"), &issued("inv_b", "cus_b")),
        // Structured, without a key: applied, but ordering per customer is at risk.
        structured(&topics.invoices, None, &issued("inv_n", "cus_n")),
        // Binary, keyed by the invoice instead of the customer.
        binary(&topics.invoices, Some("inv_d"), &issued("inv_d", "cus_d")),
    ];
    for record in &records {
        world.producer.send(record).await.unwrap();
    }
    world.wait_processed(3, Duration::from_secs(30)).await;
    let invoices = world.invoices().await;
    for (invoice, customer) in [("inv_b", "cus_b"), ("inv_n", "cus_n"), ("inv_d", "cus_d")] {
        let (facts, state) = invoices
            .get(invoice)
            .unwrap_or_else(|| panic!("{invoice} applied"));
        assert_eq!(facts.customer_id, customer);
        assert_eq!(state.amount_due_minor, 10_000);
    }
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");
    let metrics = World::metrics_text(ingestor.ops).await;
    for kind in ["no_key", "differs"] {
        let line = format!(
            "relance_kafka_records_key_at_risk_total{{kind=\"{kind}\",topic=\"{}\"}} 1",
            topics.invoices
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    ingestor.stop().await;
}
