//! The guard judges on the customer's own day, and a skip for a reason that passes hands the
//! step back to the scheduler instead of losing it.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use relance_domain::InvoiceFact;
use relance_storage::scheduling::{self, ReminderRow};
use serde_json::json;

use crate::helpers::{
    command, fresh_settings, pool, postmark_env, publish, settled, spawn_sender_with, FakePostmark,
    TENANT,
};

fn env_with(uri: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = postmark_env(uri)
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    env.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_string(), value.clone())),
    );
    env
}

#[tokio::test]
async fn a_new_zealand_customer_whose_promise_ended_yesterday_their_time_gets_the_reminder() {
    let settings = fresh_settings("nz_day").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    // The customer promised to pay by 10 December (no grace): dunning resumes on 11 December
    // in Auckland, which begins at 11:00 UTC on the 10th. The sender's clock shows 20:00 UTC
    // on the 10th: 09:00 on the 11th in Auckland, still the 10th in UTC.
    let issued_at = Utc::now() - chrono::Duration::days(60);
    relance_testkit::seed(
        &settings,
        vec![
            relance_testkit::customer_event_in(
                TENANT,
                "cus_nz",
                false,
                issued_at,
                "Pacific/Auckland",
            ),
            relance_testkit::invoice_event(
                TENANT,
                "cus_nz",
                "inv_nz",
                "issued-inv_nz",
                issued_at,
                InvoiceFact::Issued {
                    number: "F-inv_nz".into(),
                    issued_on: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
                    due_on: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                    total: relance_domain::Money::new(
                        73_456,
                        relance_domain::Currency::parse("EUR").unwrap(),
                    )
                    .unwrap(),
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            ),
            relance_testkit::invoice_event(
                TENANT,
                "cus_nz",
                "inv_nz",
                "promise-inv_nz",
                issued_at,
                InvoiceFact::PromisedToPay {
                    promised_on: NaiveDate::from_ymd_opt(2026, 12, 10).unwrap(),
                    grace_days: 0,
                },
            ),
        ],
        issued_at,
    )
    .await;
    let mut reminder = command("cus_nz", "inv_nz", "kiri@example.nz");
    reminder["data"]["timezone"] = json!("Pacific/Auckland");
    publish(&settings, &[reminder]).await;
    let env = env_with(
        &server.uri(),
        &[
            (
                "RELANCE__RUNTIME__CLOCK__START",
                "2026-12-10T20:00:00Z".into(),
            ),
            ("RELANCE__RUNTIME__CLOCK__EPOCH", Utc::now().to_rfc3339()),
        ],
    );
    let mut sender = spawn_sender_with(&settings, &env).await;
    let rows = settled(&pool(&settings), 1, Duration::from_secs(60)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].skip_reason.as_deref()),
        ("sent", None),
        "the promise ended yesterday in Auckland: {rows:?}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_reminder_held_back_by_the_frequency_cap_goes_back_to_the_scheduler() {
    let settings = fresh_settings("cap_defer").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    for invoice in ["inv_cap_1", "inv_cap_2"] {
        relance_testkit::seed_open_invoice(&settings, TENANT, "cus_cap", invoice, 73_456).await;
    }
    let first = command("cus_cap", "inv_cap_1", "cap@example.fr");
    let mut second = command("cus_cap", "inv_cap_2", "cap@example.fr");
    second["data"]["idempotency_key"] = json!("acme:inv_cap_2:first_reminder:1");
    // The scheduler's record of the second reminder, as it queued it.
    let reminder_id =
        uuid::Uuid::parse_str(second["data"]["reminder_id"].as_str().unwrap()).unwrap();
    let mut connection = pool(&settings).acquire().await.unwrap();
    scheduling::insert_reminders(
        &mut connection,
        &[ReminderRow {
            reminder_id,
            idempotency_key: "acme:inv_cap_2:first_reminder:1".into(),
            tenant: TENANT.into(),
            customer_id: "cus_cap".into(),
            invoice_ids: vec!["inv_cap_2".into()],
            kind: "message".into(),
            trigger: json!({"trigger": "due_date"}),
            step_id: "first_reminder".into(),
            channel: "email".into(),
            segment: "standard".into(),
            template: Some("first_reminder".into()),
            variant: None,
            experiment: None,
            status: "queued".into(),
            scheduled_for: Utc::now(),
            policy_id: "default".into(),
            policy_version: 1,
            topic: settings.kafka.topics.reminders.clone(),
            command: second.clone(),
            decided_by: None,
            decided_at: None,
            decision_note: None,
        }],
    )
    .await
    .unwrap();
    // Planned: nothing more to do for these invoices until their next step.
    sqlx::query("UPDATE invoices SET next_action_at = NULL")
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    // One message a day at most: the first goes, the second waits for the cap.
    publish(&settings, &[first]).await;
    let env = env_with(
        &server.uri(),
        &[("RELANCE__SENDER__FREQUENCY_CAP_COUNT", "1".into())],
    );
    let mut sender = spawn_sender_with(&settings, &env).await;
    settled(&pool(&settings), 1, Duration::from_secs(60)).await;
    publish(&settings, &[second]).await;
    let rows = settled(&pool(&settings), 2, Duration::from_secs(60)).await;
    let held = rows
        .iter()
        .find(|row| row.idempotency_key == "acme:inv_cap_2:first_reminder:1")
        .unwrap();
    assert_eq!(
        held.skip_reason.as_deref(),
        Some("frequency_cap"),
        "{rows:?}"
    );

    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM reminders WHERE reminder_id = $1")
            .bind(reminder_id)
            .fetch_one(&pool(&settings))
            .await
            .unwrap();
    assert_eq!(
        status, "deferred",
        "the step is not taken: the scheduler plans it again"
    );
    let (next, sent_at): (Option<chrono::DateTime<Utc>>, chrono::DateTime<Utc>) = sqlx::query_as(
        "SELECT i.next_action_at, d.sent_at FROM invoices i, deliveries d
         WHERE i.invoice_id = 'inv_cap_2' AND d.status = 'sent'",
    )
    .fetch_one(&pool(&settings))
    .await
    .unwrap();
    let next = next.expect("planned again");
    let expected = sent_at + chrono::Duration::hours(24);
    assert!(
        (next - expected).num_seconds().abs() <= 1,
        "planned again when the cap frees ({expected}), not {next}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
