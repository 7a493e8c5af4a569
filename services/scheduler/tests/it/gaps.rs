//! One customer, several invoices due at once: the minimum gap and the cap hold across all of
//! them, and a step the sender held back for a reason that passes is planned again.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use relance_domain::{BookEvent, InvoiceFact};
use relance_storage::scheduling;
use relance_testkit::{customer_event_in, invoice_event, seed};

use crate::helpers::{fresh_settings, reminders, scheduler, utc};

fn issued(customer: &str, invoice: &str, due_on: NaiveDate, at: DateTime<Utc>) -> BookEvent {
    invoice_event(
        "acme",
        customer,
        invoice,
        &format!("issued-{invoice}"),
        at,
        InvoiceFact::Issued {
            number: format!("F-{invoice}"),
            issued_on: due_on.checked_sub_days(Days::new(30)).unwrap(),
            due_on,
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
    )
}

/// Ticks at `start` and then at every next action of the customer's invoices until `until`.
async fn run(
    scheduler: &relance_scheduler::planner::Scheduler,
    start: DateTime<Utc>,
    until: DateTime<Utc>,
) {
    let mut now = start;
    for _ in 0..200 {
        scheduler.tick(now).await.expect("tick");
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(next_action_at) FROM invoices WHERE next_action_at > $1",
        )
        .bind(now)
        .fetch_one(&scheduler.pool)
        .await
        .unwrap();
        match next {
            Some(next) if next <= until => now = next,
            _ => break,
        }
    }
}

#[tokio::test]
async fn two_invoices_due_in_the_same_tick_never_make_two_reminders_at_once() {
    let settings = fresh_settings("gap").await;
    let published = utc("2026-11-29T20:00:00Z");
    seed(
        &settings,
        vec![
            customer_event_in("acme", "cus_nz", false, published, "Pacific/Auckland"),
            issued(
                "cus_nz",
                "inv_a",
                NaiveDate::from_ymd_opt(2026, 11, 19).unwrap(),
                published,
            ),
            issued(
                "cus_nz",
                "inv_b",
                NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
                published,
            ),
        ],
        published,
    )
    .await;
    let scheduler = scheduler(&settings);
    run(&scheduler, published, published + Duration::days(90)).await;

    let contacts: Vec<(String, DateTime<Utc>)> = reminders(&scheduler.pool)
        .await
        .into_iter()
        .filter(|row| row.kind != "escalation")
        .map(|row| (row.step_id, row.scheduled_for))
        .collect();
    assert!(contacts.len() >= 4, "{contacts:?}");
    let gap = Duration::days(3);
    for pair in contacts.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= gap,
            "two reminders to one customer {} apart: {pair:?}",
            pair[1].1 - pair[0].1
        );
    }
    for (index, (_, at)) in contacts.iter().enumerate() {
        let within = contacts[index..]
            .iter()
            .filter(|(_, later)| *later < *at + Duration::days(30))
            .count();
        assert!(
            within <= 4,
            "{within} reminders within 30 days of {at}: {contacts:?}"
        );
    }
}

#[tokio::test]
async fn a_step_the_sender_deferred_is_planned_again_not_lost() {
    let settings = fresh_settings("deferred").await;
    let start = utc("2026-12-07T08:30:00Z");
    seed(
        &settings,
        vec![
            customer_event_in("acme", "cus_def", false, start, "Europe/Paris"),
            issued(
                "cus_def",
                "inv_def",
                NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
                start,
            ),
        ],
        start,
    )
    .await;
    let scheduler = scheduler(&settings);
    scheduler.tick(start).await.expect("tick");
    let first = reminders(&scheduler.pool).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let step = first[0].step_id.clone();

    // The sender held it back (its frequency cap); a day later the cap has room again.
    let replan = start + Duration::days(1);
    let mut connection = scheduler.pool.acquire().await.unwrap();
    let deferred = scheduling::defer_reminder(
        &mut connection,
        first[0].reminder_id,
        &first[0].tenant,
        &first[0].invoice_ids,
        replan,
    )
    .await
    .unwrap();
    assert_eq!(deferred, 1);
    drop(connection);
    scheduler.tick(replan).await.expect("tick");

    let rows = reminders(&scheduler.pool).await;
    let again: Vec<_> = rows
        .iter()
        .filter(|row| row.step_id == step && row.status == "queued")
        .collect();
    assert_eq!(again.len(), 1, "the step is planned again: {rows:?}");
    assert_ne!(
        again[0].idempotency_key, first[0].idempotency_key,
        "a new attempt"
    );
    assert!(
        again[0].idempotency_key.contains(":2:"),
        "{}",
        again[0].idempotency_key
    );
}

#[tokio::test]
async fn the_scheduler_warns_at_start_of_an_option_nothing_feeds() {
    let settings = fresh_settings("warns").await;
    let mut process = relance_testkit::ServiceProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_scheduler")),
        relance_testkit::service_env(&relance_testkit::settings_overrides(&settings)),
    )
    .await;
    let warning = process
        .wait_for_log(std::time::Duration::from_secs(30), |line| {
            line.contains("stop_on_reply is set on")
        })
        .await;
    assert!(
        warning.is_some_and(|line| line.contains("has no effect")),
        "{:?}",
        process.logs()
    );
    process
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}
