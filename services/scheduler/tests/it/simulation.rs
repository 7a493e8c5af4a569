//! The live scheduler, driven through time, takes exactly the steps `policy simulate` shows,
//! with the same templates: both run the policy crate's one planning loop.

use relance_domain::InvoiceFact;
use relance_policy::commands::CustomerContext;
use relance_policy::{simulate, TimelineEntry};
use relance_scheduler::planner::customer_snapshot;
use relance_storage::scheduling;
use relance_testkit::{customer_event, invoice_event, seed};

use crate::helpers::{fresh_settings, next_action_of, reminders, scheduler, utc};

/// The steps (step, time, template) the live scheduler takes and the simulator shows for one
/// invoice of `amount_minor` euros.
async fn live_and_simulated(
    label: &str,
    amount_minor: i64,
) -> (Vec<(String, String, String)>, Vec<(String, String, String)>) {
    let settings = fresh_settings(label).await;
    let start = utc("2026-11-01T07:00:00Z");
    let total = relance_domain::Money::new(
        amount_minor,
        relance_domain::Currency::parse("EUR").unwrap(),
    )
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

    // The live scheduler: tick at each time the invoice asks to be looked at again; approvals
    // are given as soon as they are asked for, as the simulator assumes.
    let mut now = start;
    for _ in 0..30 {
        scheduler.tick(now).await.expect("tick");
        sqlx::query("UPDATE reminders SET status = 'queued' WHERE status = 'awaiting_approval'")
            .execute(&scheduler.pool)
            .await
            .unwrap();
        let mut approved_now = false;
        let mut connection = scheduler.pool.acquire().await.unwrap();
        let mut loaded = relance_storage::invoices::load_for_update(
            &mut connection,
            &[relance_domain::scoped("acme", "inv_1")],
        )
        .await
        .unwrap();
        if let Some(invoice) = loaded.remove(&relance_domain::scoped("acme", "inv_1")) {
            if invoice
                .approval
                .as_ref()
                .is_some_and(|approval| approval.value.is_some())
            {
                let approved = relance_domain::apply_invoice_event(
                    Some(&invoice),
                    &relance_domain::InvoiceEvent {
                        event_id: format!("approved-{now}"),
                        tenant: "acme".into(),
                        customer_id: "cus_1".into(),
                        invoice_id: "inv_1".into(),
                        time: now,
                        revision: None,
                        fact: InvoiceFact::ApprovalSettled,
                    },
                )
                .unwrap();
                let today = now.date_naive();
                relance_storage::invoices::upsert(
                    &mut connection,
                    &[(&approved, &approved.view(today), today)],
                    None,
                )
                .await
                .unwrap();
                relance_storage::scheduling::mark_for_replanning(
                    &mut connection,
                    &[relance_domain::scoped("acme", "inv_1")],
                    now,
                )
                .await
                .unwrap();
                approved_now = true;
            }
        }
        match next_action_of(&scheduler.pool, "inv_1").await {
            Some(next) if next > now || (approved_now && next == now) => now = next,
            Some(next) => panic!("planned in the past: {next} at {now}"),
            None => break,
        }
    }
    let live: Vec<(String, String, String)> = reminders(&scheduler.pool)
        .await
        .into_iter()
        .map(|row| {
            (
                row.step_id,
                row.scheduled_for.to_rfc3339(),
                row.template.unwrap_or_default(),
            )
        })
        .collect();

    // The simulation, from the same start.
    let mut connection = scheduler.pool.acquire().await.unwrap();
    let customer =
        scheduling::load_customers(&mut connection, &[relance_domain::scoped("acme", "cus_1")])
            .await
            .unwrap()
            .remove(0);
    let policy = scheduler.policies.for_tenant("acme");
    let timeline = simulate(
        policy,
        CustomerContext {
            tenant: "acme",
            customer_id: "cus_1",
            facts: Some(&customer.facts),
        },
        &customer_snapshot(&customer),
        std::slice::from_ref(&book.invoices[&relance_domain::scoped("acme", "inv_1")]),
        vec![],
        start,
        start + chrono::Duration::days(200),
    )
    .unwrap();
    let simulated: Vec<(String, String, String)> = timeline
        .iter()
        .filter_map(|entry| match entry {
            TimelineEntry::Step { step, template, .. } => Some((
                step.step_id.clone(),
                step.at.to_rfc3339(),
                template.template.clone(),
            )),
            TimelineEntry::Escalation { at, task, .. } => Some((
                format!("escalation_{}", task.code()),
                at.to_rfc3339(),
                String::new(),
            )),
            _ => None,
        })
        .collect();
    (live, simulated)
}

#[tokio::test]
async fn simulation_and_the_live_scheduler_agree() {
    let (live, simulated) = live_and_simulated("agree", 120_000).await;
    assert!(simulated.len() >= 5, "{simulated:?}");
    assert_eq!(live, simulated);
}

#[tokio::test]
async fn for_a_large_amount_both_use_the_personal_templates() {
    let (live, simulated) = live_and_simulated("agree_large", 2_500_000).await;
    assert_eq!(live, simulated);
    let templates: Vec<&str> = simulated
        .iter()
        .map(|(_, _, template)| template.as_str())
        .collect();
    assert!(
        templates.contains(&"first_reminder_personal")
            && templates.contains(&"final_notice_personal"),
        "{templates:?}"
    );
}
