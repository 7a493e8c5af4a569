//! A customer the database refuses to plan (a value it cannot store) is set aside; everyone
//! else is planned, and the scheduler never stops.

use chrono::{Duration, NaiveDate};
use relance_domain::InvoiceFact;
use relance_testkit::{customer_event_in, invoice_event, seed};

use crate::helpers::{fresh_settings, reminders, scheduler, utc};

#[tokio::test]
async fn a_customer_the_database_refuses_is_set_aside_and_the_others_are_planned() {
    let settings = fresh_settings("poisoned").await;
    let at = utc("2026-12-07T08:30:00Z");
    let mut events = Vec::new();
    for customer in ["cus_fine", "cus_poison"] {
        events.push(customer_event_in(
            "acme",
            customer,
            false,
            at,
            "Europe/Paris",
        ));
        events.push(invoice_event(
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
        ));
    }
    seed(&settings, events, at).await;
    let scheduler = scheduler(&settings);
    // The database refuses, for its content, what planning one customer writes.
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.customer_id = 'cus_poison' THEN
                 RAISE EXCEPTION 'invalid byte sequence for encoding \"UTF8\": 0x00'
                     USING ERRCODE = '22021';
             END IF;
             RETURN NEW;
         END $$",
    )
    .execute(&scheduler.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON reminders
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&scheduler.pool)
    .await
    .unwrap();

    let failed = scheduler.tick(at).await;
    assert!(
        matches!(&failed, Err(relance_scheduler::planner::SchedulerError::Storage(error)) if !error.is_transient()),
        "the batch fails for good: {failed:?}"
    );
    let report = scheduler
        .tick_isolating(at)
        .await
        .expect("planned one by one");
    assert_eq!(report.quarantined, 1, "{report:?}");
    let planned: Vec<String> = reminders(&scheduler.pool)
        .await
        .into_iter()
        .map(|row| row.customer_id)
        .collect();
    assert_eq!(planned, ["cus_fine"]);
    let (next, plan): (Option<chrono::DateTime<chrono::Utc>>, serde_json::Value) = sqlx::query_as(
        "SELECT next_action_at, plan FROM invoices WHERE customer_id = 'cus_poison'",
    )
    .fetch_one(&scheduler.pool)
    .await
    .unwrap();
    assert_eq!(
        next,
        Some(at + Duration::hours(1)),
        "looked at again in an hour"
    );
    assert!(
        plan["quarantined"]
            .as_str()
            .is_some_and(|reason| reason.contains("0x00")),
        "{plan}"
    );
    // The next round is not blocked by the customer set aside.
    let report = scheduler
        .tick(at + Duration::minutes(1))
        .await
        .expect("tick");
    assert_eq!(report.customers, 0, "{report:?}");
}
