//! The approval flow, and pauses and timelines, through relancectl and the admin API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use relance_config::ServiceName;
use relance_domain::{Currency, InvoiceFact, Money};
use relance_runtime::ManualClock;
use relance_scheduler::admin::{router, AdminState};
use relance_scheduler::metrics::SchedulerMetrics;
use relance_scheduler::planner::Scheduler;
use relance_scheduler::policies::PolicySet;
use relance_testkit::{
    create_unique_database, create_unique_topics, customer_event, invoice_event, seed,
    test_settings,
};
use sqlx::PgPool;

const TOKEN: &str = "dev-only-admin-token-not-for-production";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn relancectl(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .env("RELANCE_ADMIN_URL", url)
        .env("RELANCE_ADMIN_TOKEN", token)
        .args(args)
        .output()
        .await
        .expect("relancectl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn state_of(pool: &PgPool, invoice_id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, pause_reason FROM invoices WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_credit_manager_approves_edits_and_pauses_through_relancectl() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "approvals", 2).await;
    let now = utc("2026-12-10T09:00:00Z");
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_vip", true, now),
            invoice_event(
                "acme",
                "cus_vip",
                "inv_vip",
                "issued",
                now,
                InvoiceFact::Issued {
                    number: "F-VIP".into(),
                    issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                    due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                    total: Money::new(250_000, Currency::parse("EUR").unwrap()).unwrap(),
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            ),
        ],
        now,
    )
    .await;
    let registry = prometheus::Registry::new();
    let metrics = SchedulerMetrics::register(&registry).unwrap();
    let policies = Arc::new(PolicySet::load(&settings.scheduler.policies_dir).unwrap());
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    let relay = Arc::new(tokio::sync::Notify::new());
    let scheduler = Scheduler {
        pool: pool.clone(),
        policies: policies.clone(),
        settings: settings.scheduler.clone(),
        topics: settings.kafka.topics.clone(),
        metrics: metrics.clone(),
        relay: relay.clone(),
        in_flight: relance_scheduler::planner::InFlight::default(),
    };
    let report = scheduler.tick(now).await.unwrap();
    assert_eq!(
        report.awaiting_approval, 1,
        "the VIP's first reminder waits for approval"
    );
    assert_eq!(
        state_of(&pool, "inv_vip").await,
        ("paused".to_string(), Some("awaiting_approval".to_string()))
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AdminState {
        pool: pool.clone(),
        tokens: Arc::new(
            relance_config::read_admin_tokens(&settings.scheduler.admin_tokens_file).unwrap(),
        ),
        topics: settings.kafka.topics.clone(),
        clock: Arc::new(ManualClock::new(now)),
        metrics,
        relay,
        policies,
        templates: Arc::new(relance_scheduler::admin::Templates::load(&settings.sender).unwrap()),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Without a valid token, nothing.
    let (code, _, stderr) = relancectl(
        &url,
        "not-a-token-of-this-deployment",
        &["approvals", "list"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("401"), "{stderr}");

    let (code, stdout, stderr) = relancectl(&url, TOKEN, &["approvals", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    // A table a credit manager reads: who, how much, which step, since when.
    let header = stdout.lines().next().unwrap();
    for column in ["CUSTOMER", "AMOUNT DUE", "STEP", "WAITING"] {
        assert!(header.contains(column), "{stdout}");
    }
    let row = stdout.lines().nth(1).unwrap();
    assert!(
        row.contains("2,500.00 EUR") && row.contains("first_reminder email"),
        "{stdout}"
    );
    let reminder_id = row.split_whitespace().next().unwrap().to_string();

    // Edits the sender could never send are refused, and change nothing (issue 14, item 10).
    for (edit, why) in [
        (
            ["--template", "does_not_exist"],
            "template does_not_exist does not exist",
        ),
        (["--channel", "sms"], "is written for email, not sms"),
        (
            ["--template", "sms_reminder"],
            "template sms_reminder is written for sms, not email",
        ),
    ] {
        let mut args = vec!["approvals", "edit", reminder_id.as_str()];
        args.extend(edit);
        let (code, _, stderr) = relancectl(&url, TOKEN, &args).await;
        assert_eq!(code, 1, "{edit:?} is refused");
        assert!(
            stderr.contains("422") && stderr.contains(why),
            "{edit:?}: {stderr}"
        );
    }
    let unchanged: (Option<String>, String) =
        sqlx::query_as("SELECT template, channel FROM reminders WHERE reminder_id = $1::uuid")
            .bind(&reminder_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        unchanged,
        (Some("first_reminder_vip".into()), "email".into())
    );

    let (code, stdout, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "approvals",
            "edit",
            &reminder_id,
            "--template",
            "first_reminder_personal",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("template first_reminder_personal"),
        "{stdout}"
    );

    let (code, stdout, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "approvals",
            "approve",
            &reminder_id,
            "--note",
            "Long-standing customer, keep it gentle",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("queued by dev-operator"), "{stdout}");
    let (code, _, stderr) = relancectl(&url, TOKEN, &["approvals", "approve", &reminder_id]).await;
    assert_eq!(code, 1, "approving twice is refused");
    assert!(stderr.contains("409"), "{stderr}");

    let (status, decided_by, command): (String, Option<String>, serde_json::Value) =
        sqlx::query_as(
            "SELECT status, decided_by, command FROM reminders WHERE reminder_id = $1::uuid",
        )
        .bind(&reminder_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), decided_by.as_deref()),
        ("queued", Some("dev-operator"))
    );
    assert_eq!(command["data"]["approval"]["approved_by"], "dev-operator");
    assert_eq!(command["data"]["template"]["id"], "first_reminder_personal");
    relance_contracts_check(&command);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE reminder_id = $1::uuid AND published_at IS NULL",
    )
    .bind(&reminder_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(queued, 1, "the approved command waits for the relay");
    assert_eq!(
        state_of(&pool, "inv_vip").await.0,
        "overdue",
        "approval settled"
    );

    let (code, _, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "invoices",
            "pause",
            "inv_vip",
            "--reason",
            "The customer called: cheque in the post",
            "--until",
            "2026-12-20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        state_of(&pool, "inv_vip").await,
        ("paused".to_string(), Some("manual_hold".to_string()))
    );
    let (code, _, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "customers",
            "pause",
            "cus_vip",
            "--reason",
            "Account under review",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = relancectl(
        &url,
        TOKEN,
        &["customers", "resume", "cus_vip", "--reason", "Review done"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) =
        relancectl(&url, TOKEN, &["invoices", "timeline", "inv_vip"]).await;
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "inv_vip (acme, customer cus_vip): paused, 2,500.00 EUR due",
        "Invoice issued: €2,500.00, due on 2026-12-02",
        "Reminder decided: message first_reminder (email, template first_reminder_personal)",
        // Paused before the relay published it: the approved command was cancelled, and the
        // story says so after the pause, not at the reminder's planned time.
        "Reminder cancelled",
        "approve reminder by dev-operator",
        "edit reminder by dev-operator",
        "pause invoice by dev-operator",
        "pause customer by dev-operator",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let actors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT actor FROM manual_actions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        actors,
        vec!["dev-operator".to_string()],
        "every change records who made it"
    );
}

fn relance_contracts_check(command: &serde_json::Value) {
    relance_contracts::schema::Schemas::global()
        .validate_event("relance.reminder.send", 1, command)
        .expect("a known type")
        .unwrap_or_else(|violations| {
            panic!("the approved command breaks its contract: {violations:?}")
        });
}

#[tokio::test]
async fn a_credit_manager_settles_a_payment_claim_and_withdraws_a_promise() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "claims", 2).await;
    let now = utc("2026-12-10T09:00:00Z");
    let issued = |invoice: &str| {
        invoice_event(
            "acme",
            "cus_claims",
            invoice,
            &format!("issued-{invoice}"),
            now,
            InvoiceFact::Issued {
                number: format!("F-{invoice}"),
                issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                total: Money::new(25_000, Currency::parse("EUR").unwrap()).unwrap(),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: None,
            },
        )
    };
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_claims", false, now),
            issued("inv_claim"),
            issued("inv_promise"),
        ],
        now,
    )
    .await;
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    // What the tracker records when the customer says "already paid" and promises a date.
    let mut transaction = pool.begin().await.unwrap();
    for (invoice, fact) in [
        (
            "inv_claim",
            InvoiceFact::PaymentClaimed {
                reference: Some("VIR-1".into()),
            },
        ),
        (
            "inv_promise",
            InvoiceFact::PromisedToPay {
                promised_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 30).unwrap(),
                grace_days: 3,
            },
        ),
    ] {
        let origin = relance_events::FactSource {
            source: "urn:relance:tracker",
            cause_id: invoice,
            cause_type: "relance.dunning.customer_action",
        };
        relance_events::apply_invoice_fact(
            &mut transaction,
            "acme",
            &[invoice.to_string()],
            &fact,
            &origin,
            now,
            &settings.kafka.topics.events,
        )
        .await
        .unwrap();
    }
    transaction.commit().await.unwrap();
    assert_eq!(
        state_of(&pool, "inv_claim").await,
        ("paused".to_string(), Some("payment_claimed".to_string()))
    );
    assert_eq!(
        state_of(&pool, "inv_promise").await,
        ("paused".to_string(), Some("promise_to_pay".to_string()))
    );

    let registry = prometheus::Registry::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AdminState {
        pool: pool.clone(),
        tokens: Arc::new(
            relance_config::read_admin_tokens(&settings.scheduler.admin_tokens_file).unwrap(),
        ),
        topics: settings.kafka.topics.clone(),
        // A person checks later than the customer claimed.
        clock: Arc::new(ManualClock::new(now + chrono::Duration::hours(2))),
        metrics: SchedulerMetrics::register(&registry).unwrap(),
        relay: Arc::new(tokio::sync::Notify::new()),
        policies: Arc::new(PolicySet::load(&settings.scheduler.policies_dir).unwrap()),
        templates: Arc::new(relance_scheduler::admin::Templates::load(&settings.sender).unwrap()),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, stdout, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "invoices",
            "settle-claim",
            "inv_claim",
            "--reason",
            "No such transfer on our account",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("inv_claim claim_settled"), "{stdout}");
    assert_eq!(
        state_of(&pool, "inv_claim").await,
        ("overdue".to_string(), None),
        "dunning resumes"
    );
    let (code, stdout, stderr) = relancectl(
        &url,
        TOKEN,
        &[
            "invoices",
            "cancel-promise",
            "inv_promise",
            "--reason",
            "The customer asked to pay now",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("inv_promise promise_cancelled"), "{stdout}");
    assert_eq!(
        state_of(&pool, "inv_promise").await,
        ("overdue".to_string(), None)
    );
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM manual_actions ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        actions,
        vec!["settle_claim".to_string(), "cancel_promise".to_string()]
    );
}
