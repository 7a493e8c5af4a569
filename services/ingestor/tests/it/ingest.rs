use std::time::Duration;

use chrono::{TimeZone, Utc};
use relance_contracts::schema::Schemas;
use serde_json::{json, Value};

use crate::helpers::{
    assert_database_matches_model, replay_through_the_model, today, TestIngestor, World,
};
use crate::simulator::{envelope, stream, Published, TopicKind};

fn at(day: u32, hour: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn event(
    topic: TopicKind,
    event_type: &str,
    id: &str,
    time: chrono::DateTime<Utc>,
    data: Value,
) -> Published {
    Published {
        topic,
        key: "cus_1".into(),
        value: envelope(event_type, id, "acme", "cus_1", time, data),
    }
}

fn issued(id: &str, total: i64, due_on: &str, revision: i64) -> Published {
    event(
        TopicKind::Invoices,
        "billing.invoice.issued",
        id,
        at(1, 9),
        json!({
            "invoice_id": "inv_1", "customer_id": "cus_1", "number": "F-2026-001", "issued_on": "2026-11-01",
            "due_on": due_on, "total": {"amount_minor": total, "currency": "EUR"}, "revision": revision
        }),
    )
}

fn payment(id: &str, payment_id: &str, amount: i64, day: u32) -> Published {
    event(
        TopicKind::Payments,
        "billing.payment.succeeded",
        id,
        at(day, 10),
        json!({
            "payment_id": payment_id, "invoice_id": "inv_1", "customer_id": "cus_1",
            "amount": {"amount_minor": amount, "currency": "EUR"}, "paid_at": at(day, 10).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }),
    )
}

#[tokio::test]
async fn state_changes_are_stored_and_published_as_dunning_events() {
    let ingestor = TestIngestor::spawn("state").await;
    let world = &ingestor.world;
    world
        .publish(&[issued("e1", 10_000, "2026-12-02", 1)])
        .await;
    world.wait_processed(1, Duration::from_secs(30)).await;
    world.publish(&[payment("e2", "p1", 4_000, 5)]).await;
    world.wait_processed(2, Duration::from_secs(30)).await;
    world.publish(&[payment("e3", "p2", 6_000, 20)]).await;
    world.wait_processed(3, Duration::from_secs(30)).await;

    let invoices = world.invoices().await;
    let (_, state) = &invoices["inv_1"];
    assert_eq!(
        (
            state.state.as_str(),
            state.closed_reason.as_deref(),
            state.amount_due_minor
        ),
        ("closed", Some("paid"), 0)
    );

    let published = world
        .read_topic(
            &world.settings.kafka.topics.events,
            3,
            Duration::from_secs(30),
        )
        .await;
    let bodies: Vec<Value> = published
        .iter()
        .map(|record| serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap())
        .collect();
    let transitions: Vec<(Value, Value, i64)> = bodies
        .iter()
        .map(|body| {
            (
                body["data"]["from"].clone(),
                body["data"]["to"].clone(),
                body["data"]["amount_due"]["amount_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        vec![
            (Value::Null, json!("not_due"), 10_000),
            (json!("not_due"), json!("partially_paid"), 6_000),
            (json!("partially_paid"), json!("closed"), 0),
        ]
    );
    for (record, body) in published.iter().zip(&bodies) {
        Schemas::global()
            .validate_event("relance.dunning.state_changed", 1, body)
            .expect("the contract has this type")
            .expect("meets its contract");
        assert_eq!(
            record.key.as_deref(),
            Some(&b"cus_1"[..]),
            "keyed by customer"
        );
        assert_eq!(
            record.header("ce_type"),
            Some(&b"relance.dunning.state_changed"[..])
        );
        assert_eq!(
            record.header("content-type"),
            Some(relance_contracts::CLOUDEVENTS_CONTENT_TYPE.as_bytes())
        );
    }
    assert_eq!(bodies[2]["data"]["closed_reason"], json!("paid"));
    assert_eq!(bodies[2]["data"]["cause"]["event_id"], json!("e3"));

    let metrics = World::metrics_text(ingestor.ops).await;
    assert!(metrics.contains(r#"relance_ingest_events_total{event_type="billing.payment.succeeded",outcome="applied"} 2"#), "{metrics}");
    assert!(
        metrics.contains("relance_ingest_batch_size_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relance_ingest_batch_duration_seconds_bucket"),
        "{metrics}"
    );
    ingestor.stop().await;
}

#[tokio::test]
async fn a_tricky_sequence_out_of_order_ends_in_the_right_state() {
    let ingestor = TestIngestor::spawn("tricky").await;
    let world = &ingestor.world;
    let newer_update = event(
        TopicKind::Invoices,
        "billing.invoice.updated",
        "e3",
        at(10, 9),
        json!({
            "invoice_id": "inv_1", "customer_id": "cus_1", "revision": 3, "due_on": "2026-12-31",
            "total": {"amount_minor": 12_000, "currency": "EUR"}
        }),
    );
    let older_update = event(
        TopicKind::Invoices,
        "billing.invoice.updated",
        "e2",
        at(5, 9),
        json!({
            "invoice_id": "inv_1", "customer_id": "cus_1", "revision": 2, "due_on": "2026-11-15"
        }),
    );
    let profile = event(
        TopicKind::Customers,
        "billing.customer.upserted",
        "e5",
        at(12, 9),
        json!({
            "customer_id": "cus_1", "legal_name": "Durand SARL", "contact": {"first_name": "Camille", "last_name": "Durand"},
            "locale": "fr-FR", "timezone": "Europe/Paris", "country": "FR", "segment": {"vip": true}
        }),
    );
    // The payment first, then the invoice, then a newer update before an older one, then the
    // customer's profile, and a duplicate of the payment.
    world
        .publish(&[
            payment("e4", "p1", 2_000, 11),
            issued("e1", 10_000, "2026-11-30", 1),
            newer_update,
            older_update,
            profile,
            payment("e4", "p1", 2_000, 11),
        ])
        .await;
    world.wait_processed(5, Duration::from_secs(30)).await;
    let invoices = world.invoices().await;
    let (facts, state) = &invoices["inv_1"];
    assert_eq!(state.state, "partially_paid");
    assert_eq!(
        state.amount_due_minor, 10_000,
        "the newer total 12000 minus the payment, once"
    );
    assert_eq!(
        state.due_on,
        chrono::NaiveDate::from_ymd_opt(2026, 12, 31),
        "the newer due date"
    );
    assert_eq!(facts.payments.len(), 1);
    let customers = world.customers().await;
    let (customer, behaviour) = &customers["cus_1"];
    assert_eq!(
        customer.profile.as_ref().unwrap().value.legal_name,
        "Durand SARL"
    );
    assert_eq!(behaviour.open_invoices, 1);
    ingestor.stop().await;
}

fn issued_on(id: &str, invoice_id: &str, issued_on: &str, revision: i64) -> Published {
    event(
        TopicKind::Invoices,
        "billing.invoice.issued",
        id,
        at(1, 9),
        json!({
            "invoice_id": invoice_id, "customer_id": "cus_1", "number": invoice_id, "issued_on": issued_on,
            "due_on": "2026-12-31", "total": {"amount_minor": 5_000, "currency": "EUR"}, "revision": revision
        }),
    )
}

/// Payment behaviour is kept as sums, without reading the customer's other invoices; when a
/// corrected issue date moves the customer's first invoice later, the first date is found again.
#[tokio::test]
async fn a_corrected_issue_date_moves_the_customers_first_invoice_later() {
    let ingestor = TestIngestor::spawn("first-issue").await;
    let world = &ingestor.world;
    world
        .publish(&[
            issued_on("e1", "inv_1", "2016-11-01", 1),
            issued_on("e2", "inv_2", "2026-11-03", 1),
        ])
        .await;
    world.wait_processed(2, Duration::from_secs(30)).await;
    assert_eq!(
        world.customers().await["cus_1"].1.first_invoice_on,
        chrono::NaiveDate::from_ymd_opt(2016, 11, 1),
        "the typo, for now"
    );
    world
        .publish(&[issued_on("e3", "inv_1", "2026-11-05", 2)])
        .await;
    world.wait_processed(3, Duration::from_secs(30)).await;
    let customers = world.customers().await;
    assert_eq!(
        customers["cus_1"].1.first_invoice_on,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 3),
        "inv_2 is now the first"
    );
    assert_eq!(customers["cus_1"].1.open_invoices, 2);
    ingestor.stop().await;
}

#[tokio::test]
async fn ten_thousand_mixed_events_end_in_the_state_the_pure_model_gives() {
    let events = stream(20_261_123, "acme", 480);
    assert!(events.len() >= 10_000, "{} events", events.len());
    let unique: std::collections::HashSet<String> = events
        .iter()
        .map(|event| event.value["id"].as_str().unwrap().to_string())
        .collect();
    let duplicates = events.len() - unique.len();
    assert!(duplicates > 100, "the stream has duplicates: {duplicates}");

    let ingestor = TestIngestor::spawn("stream").await;
    let world = &ingestor.world;
    world.publish(&events).await;
    world
        .wait_processed(unique.len(), Duration::from_secs(240))
        .await;

    let model = replay_through_the_model(&events, today());
    assert_database_matches_model(world, &model, today()).await;

    let metrics = World::metrics_text(ingestor.ops).await;
    let duplicate_count: f64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("relance_ingest_events_total{")
                && line.contains(r#"outcome="duplicate""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        duplicate_count as usize, duplicates,
        "every redelivery counted as a duplicate"
    );
    ingestor.stop().await;
}
