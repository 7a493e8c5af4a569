//! Three replicas on one database share 10,000 due invoices and publish each command once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use relance_domain::{BookEvent, Currency, InvoiceFact, Money};
use relance_runtime::{OutboxMetrics, OutboxRelay};
use relance_testkit::{customer_event, invoice_event, read_topic, seed};

use crate::helpers::{fresh_settings, reminders, scheduler, utc, PARTITIONS};

#[tokio::test]
async fn three_replicas_and_ten_thousand_due_invoices_publish_each_command_exactly_once() {
    let settings = fresh_settings("replicas").await;
    let now = utc("2026-12-07T09:00:00Z");
    let issued = utc("2026-11-01T08:00:00Z");
    // 2,500 customers with 4 invoices each, all due on 2026-12-02: the first reminder (+3) is due
    // for each, and a customer's four invoices become one reminder.
    let mut events: Vec<BookEvent> = Vec::new();
    for customer in 0..2_500 {
        let customer_id = format!("cus_{customer}");
        events.push(customer_event("acme", &customer_id, false, issued));
        for invoice in 0..4 {
            let invoice_id = format!("inv_{customer}_{invoice}");
            events.push(invoice_event(
                "acme",
                &customer_id,
                &invoice_id,
                &format!("issued_{invoice_id}"),
                issued,
                InvoiceFact::Issued {
                    number: format!("F-{customer}-{invoice}"),
                    issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                    due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                    total: Money::new(10_000 + invoice, Currency::parse("EUR").unwrap()).unwrap(),
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            ));
        }
    }
    seed(&settings, events, now).await;

    let replicas: Vec<_> = (0..3).map(|_| scheduler(&settings)).collect();
    let mut tasks = Vec::new();
    for replica in replicas.clone() {
        tasks.push(tokio::spawn(async move {
            let mut customers = 0;
            loop {
                let report = replica.tick(now).await.expect("tick");
                if report.customers == 0 {
                    return customers;
                }
                customers += report.customers;
            }
        }));
    }
    let mut planned = Vec::new();
    for task in tasks {
        planned.push(task.await.unwrap());
    }
    // A replica may claim a customer another one has just planned (its claim saw the customer
    // due before that commit); it then finds the step taken and decides nothing. What matters
    // is below: one command per invoice.
    assert!(
        planned.iter().sum::<usize>() >= 2_500,
        "every customer planned: {planned:?}"
    );
    assert!(
        planned.iter().filter(|count| **count > 0).count() >= 2,
        "the replicas shared the work: {planned:?}"
    );

    let rows = reminders(&replicas[0].pool).await;
    assert_eq!(rows.len(), 2_500, "one consolidated reminder per customer");
    let mut per_invoice: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        assert_eq!(row.step_id, "first_reminder");
        assert_eq!(row.invoice_ids.len(), 4);
        for invoice in &row.invoice_ids {
            *per_invoice.entry(invoice).or_default() += 1;
        }
    }
    assert_eq!(per_invoice.len(), 10_000);
    assert!(
        per_invoice.values().all(|count| *count == 1),
        "every invoice in exactly one command"
    );

    // Publish the outbox, then read the topic: each command exactly once.
    let registry = prometheus::Registry::new();
    let producer = relance_kafka::EventProducer::new(&settings.kafka, "test").unwrap();
    let relay = OutboxRelay::new(
        replicas[0].pool.clone(),
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
        2_500,
        Duration::from_secs(120),
    )
    .await;
    // Anything beyond 2,500 would be a duplicate: give it a moment to show up.
    let again = read_topic(
        &settings,
        &settings.kafka.topics.reminders,
        PARTITIONS,
        2_501,
        Duration::from_secs(2),
    )
    .await;
    stop.cancel();
    relay_task.await.unwrap();
    assert_eq!(published.len(), 2_500);
    assert_eq!(again.len(), 2_500, "no command published twice");
    let mut ids: Vec<String> = published
        .iter()
        .map(|record| {
            let json: serde_json::Value =
                serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
            relance_contracts::schema::Schemas::global()
                .validate_event("relance.reminder.send", 1, &json)
                .unwrap()
                .unwrap_or_else(|violations| panic!("{violations:?}"));
            json["data"]["idempotency_key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_500);
    // What is published is what was recorded: the command is serialised once for both.
    let recorded: HashMap<String, &serde_json::Value> = rows
        .iter()
        .map(|row| (row.reminder_id.to_string(), &row.command))
        .collect();
    for record in &published {
        let json: serde_json::Value =
            serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
        let id = json["id"].as_str().unwrap();
        assert_eq!(recorded.get(id), Some(&&json), "reminder {id}");
    }
    // outbox.retention_hours = 0 (the default): a record is deleted as it is published.
    assert_eq!(settings.outbox.retention_hours, 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = $1")
        .bind(&settings.kafka.topics.reminders)
        .fetch_one(&replicas[0].pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "published commands are deleted from the outbox");
    let _ = Arc::new(());
}
