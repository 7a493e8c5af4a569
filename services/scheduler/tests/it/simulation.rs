//! The live scheduler, driven through time, takes exactly the steps `policy simulate` shows.

use relance_domain::InvoiceFact;
use relance_policy::{simulate, TimelineEntry};
use relance_scheduler::planner::customer_snapshot;
use relance_storage::scheduling;
use relance_testkit::{customer_event, invoice_event, seed};

use crate::helpers::{fresh_settings, next_action_of, reminders, scheduler, utc};

#[tokio::test]
async fn simulation_and_the_live_scheduler_agree() {
    let settings = fresh_settings("agree").await;
    let start = utc("2026-11-01T07:00:00Z");
    let total =
        relance_domain::Money::new(120_000, relance_domain::Currency::parse("EUR").unwrap())
            .unwrap();
    let book = seed(
        &settings,
        vec![
            customer_event("acme", "cus_1", false, start),
            invoice_event(
                "acme",
                "cus_1",
                "inv_1",
                "issued",
                start,
                InvoiceFact::Issued {
                    number: "F-1".into(),
                    issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                    due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                    total,
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            ),
        ],
        start,
    )
    .await;
    let scheduler = scheduler(&settings);

    // The live scheduler: tick at each time the invoice asks to be looked at again.
    let mut now = start;
    for _ in 0..20 {
        scheduler.tick(now).await.expect("tick");
        match next_action_of(&scheduler.pool, "inv_1").await {
            Some(next) if next > now => now = next,
            Some(next) => panic!("planned in the past: {next} at {now}"),
            None => break,
        }
    }
    let live: Vec<(String, String)> = reminders(&scheduler.pool)
        .await
        .into_iter()
        .map(|row| (row.step_id, row.scheduled_for.to_rfc3339()))
        .collect();

    // The simulation, from the same start.
    let mut connection = scheduler.pool.acquire().await.unwrap();
    let customer = scheduling::load_customers(&mut connection, &["cus_1".to_string()])
        .await
        .unwrap()
        .remove(0);
    let policy = scheduler.policies.for_tenant("acme");
    let timeline = simulate(
        policy,
        &customer_snapshot(&customer),
        &book.invoices["inv_1"],
        vec![],
        start,
        start + chrono::Duration::days(200),
    );
    let simulated: Vec<(String, String)> = timeline
        .iter()
        .filter_map(|entry| match entry {
            TimelineEntry::Step { step, .. } => Some((step.step_id.clone(), step.at.to_rfc3339())),
            TimelineEntry::Escalation { at, task, .. } => {
                Some((format!("escalation_{}", task.code()), at.to_rfc3339()))
            }
            _ => None,
        })
        .collect();
    assert!(simulated.len() >= 5, "{simulated:?}");
    assert_eq!(live, simulated);
}
