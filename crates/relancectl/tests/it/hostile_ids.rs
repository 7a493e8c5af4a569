//! Issue 14, item 8: ids the contracts allow may hold `/`, `?`, `#`, `%` or `..`; every
//! relancectl command must reach exactly the object it names, never another route or object.
//! Also item 3: `relancectl customers erase` through the admin API.

use chrono::{DateTime, Utc};
use relance_config::ServiceName;
use relance_domain::{Currency, InvoiceFact, Money};
use relance_testkit::{
    create_unique_database, create_unique_topics, customer_event, invoice_event, seed,
    test_settings,
};

const TOKEN: &str = "dev-only-admin-token-not-for-production";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn relancectl(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .env("RELANCE_ADMIN_URL", url)
        .env("RELANCE_ADMIN_TOKEN", TOKEN)
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

async fn bystander_state(pool: &sqlx::PgPool) -> (String, bool, Option<String>) {
    sqlx::query_as(
        "SELECT i.state, c.held, c.email FROM invoices i JOIN customers c USING (customer_id)
         WHERE i.invoice_id = 'inv_bystander'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn hostile_ids_reach_exactly_their_object_through_every_command() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "hostile", 1).await;
    let now = utc("2026-12-10T09:00:00Z");
    let customer = "cus/../x?y#z%2F";
    let bystander = "x";
    let invoice = "inv/../../customers/x?pause#1%20";
    let issued = |customer: &str, invoice: &str, id: &str| {
        invoice_event(
            "acme",
            customer,
            invoice,
            id,
            now,
            InvoiceFact::Issued {
                number: "F-H".into(),
                issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                total: Money::new(10_000, Currency::parse("EUR").unwrap()).unwrap(),
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
            customer_event("acme", customer, false, now),
            customer_event("acme", bystander, false, now),
            issued(customer, invoice, "issued-hostile"),
            issued(bystander, "inv_bystander", "issued-bystander"),
        ],
        now,
    )
    .await;
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    let url = crate::serve_admin_api(&settings, pool.clone(), now).await;

    let bystander_before = bystander_state(&pool).await;
    let commands: Vec<Vec<&str>> = vec![
        vec!["invoices", "pause", invoice, "--reason", "hostile id"],
        vec!["invoices", "timeline", invoice],
        vec!["invoices", "resume", invoice, "--reason", "hostile id"],
        vec![
            "invoices",
            "settle-claim",
            invoice,
            "--reason",
            "hostile id",
        ],
        vec![
            "invoices",
            "cancel-promise",
            invoice,
            "--reason",
            "hostile id",
        ],
        vec!["customers", "pause", customer, "--reason", "hostile id"],
        vec!["customers", "resume", customer, "--reason", "hostile id"],
        vec![
            "customer",
            "erase",
            customer,
            "--legal-basis",
            "GDPR art. 17, test",
        ],
    ];
    for command in &commands {
        let (code, stdout, stderr) = relancectl(&url, command).await;
        assert_eq!(code, 0, "{command:?}: {stdout} {stderr}");
    }
    // Every change is about the hostile objects, none about the bystander.
    let subjects: Vec<(String, String)> =
        sqlx::query_as("SELECT subject_id, action FROM manual_actions ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(subjects.len(), 7, "{subjects:?}");
    for (subject, action) in &subjects {
        assert!(
            subject == invoice || subject == customer,
            "{action} on {subject}"
        );
    }
    assert_eq!(bystander_state(&pool).await, bystander_before);
    let (held, email): (bool, Option<String>) =
        sqlx::query_as("SELECT held, email FROM customers WHERE customer_id = $1")
            .bind(customer)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(held && email.is_none(), "the hostile customer was erased");
    // Reminder ids that are not UUIDs are 404, never another route.
    for hostile in ["../invoices/x/pause", "a?b#c", "%2e%2e"] {
        let (code, _, stderr) = relancectl(&url, &["approvals", "approve", hostile]).await;
        assert_eq!(code, 1);
        assert!(stderr.contains("404"), "{hostile}: {stderr}");
    }
}
