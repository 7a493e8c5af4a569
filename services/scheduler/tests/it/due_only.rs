//! A planning round reads and writes only its customers' due invoices; whatever can bring an
//! invoice's next action forward marks it due (a customer's new profile, a reminder cancelled).

use relance_domain::{Currency, InvoiceFact, Money};
use relance_ingestor::handler::IngestHandler;
use relance_ingestor::metrics::IngestMetrics;
use relance_kafka::{BatchHandler, ConsumedRecord};
use relance_runtime::ManualClock;
use relance_testkit::{customer_event, invoice_event, seed};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{fresh_settings, next_action_of, reminders, scheduler, utc};

fn issued(invoice_id: &str, due_on: (i32, u32, u32)) -> InvoiceFact {
    InvoiceFact::Issued {
        number: format!("F-{invoice_id}"),
        issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        due_on: chrono::NaiveDate::from_ymd_opt(due_on.0, due_on.1, due_on.2).unwrap(),
        total: Money::new(50_000, Currency::parse("EUR").unwrap()).unwrap(),
        order_reference: None,
        payment_url: None,
        contact: None,
        description: None,
    }
}

/// cus_1 with an overdue invoice (inv_due) and one due in January (inv_later), both planned.
async fn two_invoices(
    label: &str,
) -> (
    relance_config::Settings,
    relance_scheduler::planner::Scheduler,
) {
    let settings = fresh_settings(label).await;
    let now = utc("2026-12-07T09:00:00Z");
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_1", false, now),
            invoice_event(
                "acme",
                "cus_1",
                "inv_due",
                "issued-due",
                now,
                issued("inv_due", (2026, 11, 20)),
            ),
            invoice_event(
                "acme",
                "cus_1",
                "inv_later",
                "issued-later",
                now,
                issued("inv_later", (2027, 1, 15)),
            ),
        ],
        now,
    )
    .await;
    let scheduler = scheduler(&settings);
    scheduler.tick(now).await.expect("tick");
    assert_eq!(
        reminders(&scheduler.pool).await.len(),
        1,
        "a reminder for inv_due"
    );
    (settings, scheduler)
}

async fn plan_of(pool: &PgPool, invoice_id: &str) -> Option<serde_json::Value> {
    sqlx::query_scalar("SELECT plan FROM invoices WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(pool)
        .await
        .expect("invoice")
}

fn handler(settings: &relance_config::Settings, pool: &PgPool, now: &str) -> IngestHandler {
    let producer = relance_kafka::EventProducer::new(&settings.kafka, "test").unwrap();
    IngestHandler::new(
        pool.clone(),
        std::sync::Arc::new(ManualClock::new(utc(now))),
        relance_kafka::DeadLetterWriter::new(
            producer,
            settings.kafka.topics.dlq.clone(),
            "ingestor",
        ),
        settings.kafka.topics.events.clone(),
        IngestMetrics::register(&prometheus::Registry::new()).unwrap(),
        relance_kafka::KafkaMetrics::register(&prometheus::Registry::new()).unwrap(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )
}

fn record(topic: &str, customer: &str, event: &serde_json::Value) -> ConsumedRecord {
    ConsumedRecord {
        topic: topic.to_string(),
        partition: 0,
        offset: 0,
        key: Some(customer.as_bytes().to_vec()),
        payload: Some(serde_json::to_vec(event).unwrap()),
        headers: vec![],
        timestamp_ms: None,
    }
}

/// Before, every open invoice of a claimed customer was locked, decoded and planned again with
/// the due one: the cost of a round grew with the customers' open invoices, and one unreadable
/// invoice not due stopped its customer's reminders.
#[tokio::test]
async fn an_invoice_not_due_is_neither_read_nor_rewritten_when_its_customer_is_planned() {
    let (_settings, scheduler) = two_invoices("dueonly").await;
    let pool = &scheduler.pool;
    let next = next_action_of(pool, "inv_due")
        .await
        .expect("inv_due's next step");
    let later = next_action_of(pool, "inv_later")
        .await
        .expect("inv_later's first step");
    assert!(
        later > next,
        "inv_later is not due when inv_due's next step comes"
    );
    sqlx::query(
        "UPDATE invoices SET facts = '{\"unreadable\": true}', plan = '{\"untouched\": true}'
         WHERE invoice_id = 'inv_later'",
    )
    .execute(pool)
    .await
    .unwrap();

    let report = scheduler
        .tick(next)
        .await
        .expect("the round ignores inv_later");
    assert_eq!((report.customers, report.quarantined), (1, 0));
    let rows = reminders(pool).await;
    assert_eq!(rows.len(), 2, "inv_due's next step is decided");
    assert_eq!(rows[1].invoice_ids, ["inv_due"]);
    assert_eq!(
        plan_of(pool, "inv_later").await,
        Some(json!({"untouched": true}))
    );
    assert_eq!(next_action_of(pool, "inv_later").await, Some(later));
}

/// A payment cancels the reminder queued for its invoice; that reminder no longer counts for
/// the gap, so the customer's other invoices are planned again at once.
#[tokio::test]
async fn a_cancelled_reminder_brings_the_customers_other_invoices_forward() {
    let (settings, scheduler) = two_invoices("dueonly-cancel").await;
    let pool = &scheduler.pool;
    let queued = reminders(pool).await;
    assert_eq!(
        queued[0].status, "queued",
        "its command waits in the outbox"
    );
    let paid_at = "2026-12-07T09:30:00Z";
    let payment = json!({
        "specversion": "1.0", "id": "pay-1", "source": "/billing/acme", "type": "billing.payment.succeeded",
        "time": paid_at, "tenant": "acme", "schemaversion": 1, "partitionkey": "cus_1",
        "data": {"payment_id": "pay_1", "invoice_id": "inv_due", "customer_id": "cus_1",
                 "amount": {"amount_minor": 50_000, "currency": "EUR"}, "paid_at": paid_at}
    });
    handler(&settings, pool, paid_at)
        .handle(&[record(&settings.kafka.topics.payments, "cus_1", &payment)])
        .await
        .expect("the payment applies");
    assert_eq!(reminders(pool).await[0].status, "cancelled");
    assert_eq!(next_action_of(pool, "inv_later").await, Some(utc(paid_at)));
}

/// A customer's new profile (here: now a VIP) reaches every open invoice's plan at once, not
/// when each next comes due.
#[tokio::test]
async fn a_new_customer_profile_brings_all_their_open_invoices_forward() {
    let (settings, scheduler) = two_invoices("dueonly-profile").await;
    let pool = &scheduler.pool;
    let at = "2026-12-08T10:00:00Z";
    let profile = json!({
        "specversion": "1.0", "id": "profile-2", "source": "/billing/acme", "type": "billing.customer.upserted",
        "time": at, "tenant": "acme", "schemaversion": 1, "partitionkey": "cus_1",
        "data": {"customer_id": "cus_1", "revision": 2, "legal_name": "Durand SARL",
                 "contact": {"first_name": "Camille", "last_name": "Durand", "email": "cus_1@example.com"},
                 "locale": "fr-FR", "timezone": "Europe/Paris", "country": "FR", "segment": {"vip": true}}
    });
    handler(&settings, pool, at)
        .handle(&[record(&settings.kafka.topics.customers, "cus_1", &profile)])
        .await
        .expect("the profile applies");
    for invoice in ["inv_due", "inv_later"] {
        assert_eq!(
            next_action_of(pool, invoice).await,
            Some(utc(at)),
            "{invoice}"
        );
    }
}
