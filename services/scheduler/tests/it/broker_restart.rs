//! The broker goes away and comes back empty (a restart of the test broker loses its topics
//! and producer ids): publishing recovers by itself, and readiness says so while it cannot.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use relance_config::ServiceName;
use relance_domain::InvoiceFact;
use relance_testkit::{
    create_unique_database, customer_event_in, invoice_event, read_topic, seed, service_env,
    settings_overrides, test_settings, unique_name, wait_for, PrivateBroker, ServiceProcess,
};

fn due_invoice(customer: &str, at: DateTime<Utc>) -> Vec<relance_domain::BookEvent> {
    vec![
        customer_event_in("acme", customer, false, at, "Europe/Paris"),
        invoice_event(
            "acme",
            customer,
            &format!("inv_{customer}"),
            &format!("issued-{customer}"),
            at,
            InvoiceFact::Issued {
                number: format!("F-{customer}"),
                issued_on: NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
                due_on: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
                total: relance_domain::Money::new(
                    40_000,
                    relance_domain::Currency::parse("EUR").unwrap(),
                )
                .unwrap(),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: None,
            },
        ),
    ]
}

/// The customers of the commands on the reminders topic.
async fn commanded(settings: &relance_config::Settings, count: usize) -> Vec<String> {
    read_topic(
        settings,
        &settings.kafka.topics.reminders,
        4,
        count,
        Duration::from_secs(2),
    )
    .await
    .iter()
    .filter_map(|record| {
        let json: serde_json::Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
        json["data"]["customer_id"].as_str().map(str::to_string)
    })
    .collect()
}

#[tokio::test]
async fn after_the_broker_comes_back_empty_publishing_recovers_and_readiness_told_the_outage() {
    let mut broker = PrivateBroker::start();
    let mut settings =
        broker.settings(&create_unique_database(&test_settings(ServiceName::Scheduler)).await);
    let suffix = unique_name("restart");
    settings.kafka.topics.reminders = format!("{suffix}.relance.reminders");
    settings.kafka.topics.tasks = format!("{suffix}.relance.tasks");
    settings.kafka.topics.events = format!("{suffix}.relance.events");
    settings.kafka.topics.dlq = format!("{suffix}.relance.dlq");
    broker
        .create_topics(&settings, &settings.kafka.topics, 4)
        .await;
    // Monday 7 December, 10:30 in Paris: the invoices due on the 3rd get their first reminder.
    let simulated = "2026-12-07T09:30:00Z";
    let at: DateTime<Utc> = simulated.parse().unwrap();
    seed(&settings, due_invoice("cus_before", at), at).await;

    let mut overrides = settings_overrides(&settings);
    overrides.extend([
        ("RELANCE__RUNTIME__CLOCK__START", simulated.to_string()),
        ("RELANCE__RUNTIME__CLOCK__EPOCH", Utc::now().to_rfc3339()),
        ("RELANCE__KAFKA__MESSAGE_TIMEOUT_MS", "3000".to_string()),
        ("RELANCE__OUTBOX__UNREADY_AFTER_MS", "2000".to_string()),
        ("RELANCE__OUTBOX__POLL_INTERVAL_MS", "200".to_string()),
    ]);
    let mut scheduler = ServiceProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_scheduler")),
        service_env(&overrides),
    )
    .await;
    wait_for(Duration::from_secs(30), "the first command", || async {
        commanded(&settings, 1)
            .await
            .contains(&"cus_before".to_string())
            .then_some(())
    })
    .await;

    // The broker goes away; a reminder is decided meanwhile and cannot be published.
    broker.stop();
    seed(&settings, due_invoice("cus_during", at), at).await;
    let (status, body) = wait_for(
        Duration::from_secs(60),
        "readiness to report that the service cannot publish",
        || async {
            let (status, body) = scheduler.get("/readyz").await;
            (status == 503 && body.contains("\"publishing\":\"cannot publish"))
                .then_some((status, body))
        },
    )
    .await;
    assert!(body.contains("cannot publish"), "{status}: {body}");

    // It comes back empty: same address, no topics, no producer ids.
    broker.restart();
    broker
        .create_topics(&settings, &settings.kafka.topics, 4)
        .await;
    wait_for(
        Duration::from_secs(90),
        "the command decided during the outage to be published",
        || async {
            commanded(&settings, 1)
                .await
                .contains(&"cus_during".to_string())
                .then_some(())
        },
    )
    .await;
    wait_for(Duration::from_secs(30), "readiness again", || async {
        (scheduler.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    // The gauge is refreshed on the relay's next round.
    wait_for(Duration::from_secs(30), "nothing pending", || async {
        let (_, metrics) = scheduler.get("/metrics").await;
        metrics.contains("relance_outbox_pending 0").then_some(())
    })
    .await;
    scheduler
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
