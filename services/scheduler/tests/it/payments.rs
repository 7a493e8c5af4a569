//! A payment recorded between planning and publishing prevents the command.

use std::time::Duration;

use relance_domain::{Currency, InvoiceFact, Money};
use relance_ingestor::handler::IngestHandler;
use relance_ingestor::metrics::IngestMetrics;
use relance_kafka::{BatchHandler, ConsumedRecord};
use relance_runtime::{ManualClock, OutboxMetrics, OutboxRelay};
use relance_testkit::{customer_event, invoice_event, read_topic, seed};
use serde_json::json;

use crate::helpers::{fresh_settings, next_action_of, reminders, scheduler, utc, PARTITIONS};

fn issued(invoice_id: &str) -> InvoiceFact {
    InvoiceFact::Issued {
        number: format!("F-{invoice_id}"),
        issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        total: Money::new(50_000, Currency::parse("EUR").unwrap()).unwrap(),
        order_reference: None,
        payment_url: None,
        contact: None,
        description: None,
    }
}

fn payment_event(id: &str, invoice_id: &str, customer_id: &str) -> serde_json::Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/billing/acme", "type": "billing.payment.succeeded",
        "time": "2026-12-07T09:30:00Z", "tenant": "acme", "schemaversion": 1, "partitionkey": customer_id,
        "data": {"payment_id": format!("pay_{invoice_id}"), "invoice_id": invoice_id, "customer_id": customer_id,
                 "amount": {"amount_minor": 50_000, "currency": "EUR"}, "paid_at": "2026-12-07T09:29:00Z"}
    })
}

#[tokio::test]
async fn a_payment_between_planning_and_publishing_prevents_the_command() {
    let settings = fresh_settings("payment").await;
    let now = utc("2026-12-07T09:00:00Z");
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_queued", false, now),
            invoice_event(
                "acme",
                "cus_queued",
                "inv_queued",
                "issued-queued",
                now,
                issued("inv_queued"),
            ),
            customer_event("acme", "cus_planned", false, now),
            invoice_event(
                "acme",
                "cus_planned",
                "inv_planned",
                "issued-planned",
                now,
                issued("inv_planned"),
            ),
        ],
        now,
    )
    .await;
    // inv_planned is planned for later: its next step is not due yet at 2026-11-20.
    sqlx::query("UPDATE invoices SET next_action_at = NULL WHERE invoice_id = 'inv_planned'")
        .execute(&scheduler(&settings).pool)
        .await
        .unwrap();
    let scheduler = scheduler(&settings);
    scheduler.tick(now).await.expect("tick");
    let queued = reminders(&scheduler.pool).await;
    assert_eq!(
        queued.len(),
        1,
        "a command for inv_queued waits in the outbox"
    );
    assert_eq!(queued[0].status, "queued");
    sqlx::query("UPDATE invoices SET next_action_at = $1 WHERE invoice_id = 'inv_planned'")
        .bind(utc("2026-11-20T08:00:00Z"))
        .execute(&scheduler.pool)
        .await
        .unwrap();
    scheduler
        .tick(utc("2026-11-20T08:00:00Z"))
        .await
        .expect("tick");
    let planned_for = next_action_of(&scheduler.pool, "inv_planned")
        .await
        .expect("planned");
    assert!(planned_for > utc("2026-11-20T08:00:00Z"));

    // The ingestor's batch transaction records both payments before any relay runs.
    let producer = relance_kafka::EventProducer::new(&settings.kafka, "test").unwrap();
    let registry = prometheus::Registry::new();
    let mut handler = IngestHandler::new(
        scheduler.pool.clone(),
        std::sync::Arc::new(ManualClock::new(utc("2026-12-07T09:30:00Z"))),
        relance_kafka::DeadLetterWriter::new(
            producer.clone(),
            settings.kafka.topics.dlq.clone(),
            "ingestor",
        ),
        settings.kafka.topics.events.clone(),
        IngestMetrics::register(&registry).unwrap(),
        relance_kafka::KafkaMetrics::register(&prometheus::Registry::new()).unwrap(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    let batch: Vec<ConsumedRecord> = [("inv_queued", "cus_queued"), ("inv_planned", "cus_planned")]
        .iter()
        .enumerate()
        .map(|(offset, (invoice, customer))| ConsumedRecord {
            topic: settings.kafka.topics.payments.clone(),
            partition: 0,
            offset: offset as i64,
            key: Some(customer.as_bytes().to_vec()),
            payload: Some(
                serde_json::to_vec(&payment_event(
                    &format!("pay-event-{invoice}"),
                    invoice,
                    customer,
                ))
                .unwrap(),
            ),
            headers: vec![],
            timestamp_ms: None,
        })
        .collect();
    handler.handle(&batch).await.expect("the payments apply");
    let closed: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices WHERE state = 'closed'")
        .fetch_one(&scheduler.pool)
        .await
        .unwrap();
    assert_eq!(closed, 2);

    // The queued command was cancelled with the payment; the planned step never comes.
    let rows = reminders(&scheduler.pool).await;
    assert_eq!(rows[0].status, "cancelled");
    // At the planned time (and after the payment), nothing is decided.
    let later = planned_for.max(utc("2026-12-07T10:00:00Z"));
    scheduler.tick(later).await.expect("tick");
    assert_eq!(
        reminders(&scheduler.pool).await.len(),
        1,
        "nothing decided for the paid invoice"
    );
    assert_eq!(next_action_of(&scheduler.pool, "inv_planned").await, None);

    let registry = prometheus::Registry::new();
    let relay = OutboxRelay::new(
        scheduler.pool.clone(),
        "test-scheduler",
        producer,
        settings.outbox.clone(),
        OutboxMetrics::register(&registry).unwrap(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let published = read_topic(
        &settings,
        &settings.kafka.topics.reminders,
        PARTITIONS,
        1,
        Duration::from_secs(3),
    )
    .await;
    stop.cancel();
    relay_task.await.unwrap();
    assert!(
        published.is_empty(),
        "no command published for a paid invoice: {published:?}"
    );
}
