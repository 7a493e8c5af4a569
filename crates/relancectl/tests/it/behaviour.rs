//! Payment behaviour is kept as sums the ingestor adds each batch's change to; sums that
//! drifted (a write outside relance, a bug) are repaired by counting them again from the
//! customer's invoices: one customer, or a tenant's customers page by page, by an operator,
//! recorded; a dry run writes nothing.

use chrono::{DateTime, NaiveDate, Utc};
use relance_config::ServiceName;
use relance_domain::{Currency, InvoiceFact, Money};
use relance_testkit::{create_unique_database, customer_event, invoice_event, seed, test_settings};
use serde_json::{json, Value};
use sqlx::PgPool;

const OPERATOR: &str = "dev-only-admin-token-not-for-production";
const ACME: &str = "dev-only-credit-manager-acme-token-0001";
/// An operator of another tenant only, added to the development tokens for these tests.
const GLOBEX_OPERATOR: &str = "test-only-operator-of-globex-token-0001";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn issued(
    customer: &str,
    invoice: &str,
    amount: i64,
    time: DateTime<Utc>,
) -> relance_domain::BookEvent {
    invoice_event(
        "acme",
        customer,
        invoice,
        &format!("issued-{invoice}"),
        time,
        InvoiceFact::Issued {
            number: format!("F-{invoice}"),
            issued_on: day("2026-11-01"),
            due_on: day("2026-12-01"),
            total: Money::new(amount, Currency::parse("EUR").unwrap()).unwrap(),
            order_reference: None,
            payment_url: None,
            contact: None,
            description: None,
        },
    )
}

/// (open invoices, open balance, paid invoices, lifetime paid) as stored.
async fn sums(pool: &PgPool, customer: &str) -> (i32, Value, i32, Value) {
    sqlx::query_as(
        "SELECT open_invoices, open_balance, paid_invoices, lifetime_paid FROM customers
         WHERE tenant = 'acme' AND customer_id = $1",
    )
    .bind(customer)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn drift(pool: &PgPool, customer: &str) {
    sqlx::query(
        "UPDATE customers SET open_invoices = 7, open_balance = '{\"EUR\": 1}'
         WHERE tenant = 'acme' AND customer_id = $1",
    )
    .bind(customer)
    .execute(pool)
    .await
    .unwrap();
}

/// Sums no relance write makes: a negative count, an amount map written by hand.
async fn drift_unreadably(pool: &PgPool, customer: &str) {
    sqlx::query(
        "UPDATE customers SET paid_invoices = -1, lifetime_paid = '{\"eur\": 1.5}'
         WHERE tenant = 'acme' AND customer_id = $1",
    )
    .bind(customer)
    .execute(pool)
    .await
    .unwrap();
}

async fn repairs_recorded(pool: &PgPool) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT subject_id, actor, reason FROM manual_actions
         WHERE action = 'recount_behaviour' ORDER BY subject_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn drifted_sums_are_recounted_from_the_invoices_by_an_operator_and_recorded() {
    let settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    let now = utc("2026-12-10T09:00:00Z");
    let paid = invoice_event(
        "acme",
        "cus_1",
        "inv_paid",
        "paid-inv_paid",
        now,
        InvoiceFact::PaymentSucceeded {
            payment_id: "pay_1".into(),
            amount: Money::new(4_000, Currency::parse("EUR").unwrap()).unwrap(),
            paid_at: utc("2026-12-05T10:00:00Z"),
        },
    );
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_1", false, now),
            customer_event("acme", "cus_2", false, now),
            customer_event("acme", "cus_3", false, now),
            issued("cus_1", "inv_open", 10_000, now),
            issued("cus_1", "inv_paid", 4_000, now),
            paid,
            issued("cus_2", "inv_2", 2_500, now),
        ],
        now,
    )
    .await;
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    let right = sums(&pool, "cus_1").await;
    assert_eq!(right, (1, json!({"EUR": 10_000}), 1, json!({"EUR": 4_000})));
    drift(&pool, "cus_1").await;

    // The development tokens, and an operator who may repair globex only.
    let tokens = tempfile::NamedTempFile::new().unwrap();
    let development = std::fs::read_to_string(&settings.scheduler.admin_tokens_file).unwrap();
    let globex_operator = relance_config::token_line(
        "ops-globex",
        relance_config::AdminRole::Operator,
        &relance_config::TenantScope::Only(vec!["globex".into()]),
        GLOBEX_OPERATOR,
    );
    std::fs::write(tokens.path(), format!("{development}\n{globex_operator}\n")).unwrap();
    let mut served = settings.clone();
    served.scheduler.admin_tokens_file = tokens.path().to_string_lossy().into_owned();
    let url = crate::serve_admin_api(&served, pool.clone(), now).await;
    let http = reqwest::Client::new();
    let recount = |token: &'static str, path: &str, body: Value| {
        let request = http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let one = "/v1/customers/cus_1/recount-behaviour";

    // A credit manager may not: it is a repair of the database.
    let (status, answer) = recount(ACME, one, json!({"reason": "support ticket 4411"})).await;
    assert_eq!(status, 403, "{answer}");
    // A dry run reports and writes nothing.
    let (status, answer) = recount(
        OPERATOR,
        one,
        json!({"reason": "support ticket 4411", "dry_run": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "drifted");
    assert_eq!(answer["drifted"], json!(["open_invoices", "open_balance"]));
    assert_eq!(answer["stored"]["open_invoices"], 7);
    assert_eq!(answer["recounted"]["open_invoices"], 1);
    assert_eq!(answer["recounted"]["open_balance"], json!({"EUR": 10_000}));
    assert_ne!(sums(&pool, "cus_1").await, right);
    assert!(repairs_recorded(&pool).await.is_empty());
    // The repair writes the recount and records who did it and why.
    let (status, answer) = recount(OPERATOR, one, json!({"reason": "support ticket 4411"})).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("repaired")),
        "{answer}"
    );
    assert_eq!(sums(&pool, "cus_1").await, right);
    let recorded = repairs_recorded(&pool).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, "cus_1");
    assert_eq!(recorded[0].2.as_deref(), Some("support ticket 4411"));
    // Nothing left to repair.
    let (status, answer) = recount(OPERATOR, one, json!({"reason": "again"})).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("unchanged")),
        "{answer}"
    );
    assert_eq!(answer["drifted"], json!([]));
    assert_eq!(repairs_recorded(&pool).await.len(), 1);
    // A blank reason and an unknown customer are refused.
    let (status, _) = recount(OPERATOR, one, json!({"reason": " "})).await;
    assert_eq!(status, 400);
    let (status, _) = recount(
        OPERATOR,
        "/v1/customers/cus_nobody/recount-behaviour",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, 404);

    // A tenant's sweep, page by page: each page says where the next starts, the last none.
    sqlx::query("UPDATE invoices SET next_action_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    drift(&pool, "cus_1").await;
    drift_unreadably(&pool, "cus_3").await;
    let sweep = "/v1/behaviour-recounts";
    let (status, page) = recount(
        OPERATOR,
        sweep,
        json!({"tenant": "acme", "reason": "sweep", "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["checked"], 2);
    assert_eq!(page["next_after"], "cus_2");
    let drifted: Vec<&str> = page["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|customer| customer["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["cus_1"]);
    let (status, page) = recount(
        OPERATOR,
        sweep,
        json!({"tenant": "acme", "reason": "sweep", "limit": 2, "after": "cus_2"}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["checked"].clone(), page["next_after"].clone()),
        (json!(1), Value::Null)
    );
    assert_eq!(page["drifted"][0]["customer_id"], "cus_3");
    assert_eq!(
        page["drifted"][0]["drifted"],
        json!(["paid_invoices", "lifetime_paid"])
    );
    assert_eq!(
        page["drifted"][0]["stored"]["lifetime_paid"],
        json!({"eur": 1.5})
    );
    assert_eq!(sums(&pool, "cus_1").await, right);
    assert_eq!(sums(&pool, "cus_3").await, (0, json!({}), 0, json!({})));
    assert_eq!(repairs_recorded(&pool).await.len(), 3);
    // A repaired customer's open invoices are planned again (their segment may follow).
    let marked: Vec<String> =
        sqlx::query_scalar("SELECT customer_id FROM invoices WHERE next_action_at = $1")
            .bind(now)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        marked,
        ["cus_1"],
        "cus_1's open invoice; cus_2 was not repaired"
    );
    // One customer whose sums no longer read as behaviour is repaired too.
    drift_unreadably(&pool, "cus_3").await;
    let (status, answer) = recount(
        OPERATOR,
        "/v1/customers/cus_3/recount-behaviour",
        json!({"reason": "hand-edited row"}),
    )
    .await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("repaired")),
        "{answer}"
    );
    assert_eq!(sums(&pool, "cus_3").await, (0, json!({}), 0, json!({})));
    // An operator of another tenant sees no such tenant, for the sweep as for one customer;
    // a credit manager is refused before anything; a bad page size is refused.
    let (status, answer) = recount(
        GLOBEX_OPERATOR,
        sweep,
        json!({"tenant": "acme", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = recount(GLOBEX_OPERATOR, one, json!({"reason": "x"})).await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = recount(
        "dev-only-credit-manager-globex-token-0001",
        sweep,
        json!({"tenant": "acme", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 403, "a credit manager is refused before anything");
    let (status, _) = recount(
        OPERATOR,
        sweep,
        json!({"tenant": "acme", "reason": "x", "limit": 0}),
    )
    .await;
    assert_eq!(status, 400);

    // A customer one of whose invoices no longer reads is left as stored and named; the
    // others are recounted all the same, and the single route says why it cannot.
    sqlx::raw_sql(
        "CREATE TEMP TABLE c4 AS SELECT * FROM customers WHERE customer_id = 'cus_3';
         UPDATE c4 SET customer_id = 'cus_4', open_invoices = 5,
                       facts = jsonb_set(facts, '{customer_id}', '\"cus_4\"');
         INSERT INTO customers SELECT * FROM c4;
         CREATE TEMP TABLE broken AS SELECT * FROM invoices WHERE invoice_id = 'inv_2';
         UPDATE broken SET invoice_id = 'inv_broken', customer_id = 'cus_4',
                           facts = '{\"not\": \"an invoice\"}';
         INSERT INTO invoices SELECT * FROM broken;
         DROP TABLE c4; DROP TABLE broken;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, answer) = recount(
        OPERATOR,
        "/v1/customers/cus_4/recount-behaviour",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("inv_broken"),
        "{answer}"
    );
    let (status, page) = recount(
        OPERATOR,
        sweep,
        json!({"tenant": "acme", "reason": "sweep", "after": "cus_3"}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["checked"], 1);
    assert_eq!(page["not_recounted"][0]["customer_id"], "cus_4");
    assert_eq!(page["not_recounted"][0]["invoice_id"], "inv_broken");
    sqlx::query("DELETE FROM invoices WHERE invoice_id = 'inv_broken'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM customers WHERE customer_id = 'cus_4'")
        .execute(&pool)
        .await
        .unwrap();

    // relancectl sweeps every page and says what it repaired.
    drift(&pool, "cus_2").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .env("RELANCE_ADMIN_URL", &url)
        .env("RELANCE_ADMIN_TOKEN", OPERATOR)
        .args([
            "--tenant",
            "acme",
            "customers",
            "recount-behaviour",
            "--all",
            "--reason",
            "nightly check",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "cus_2 repaired: open_invoices, open_balance\n3 customers of acme checked, 1 repaired\n"
    );
    assert_eq!(
        sums(&pool, "cus_2").await,
        (1, json!({"EUR": 2_500}), 0, json!({}))
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .env("RELANCE_ADMIN_URL", &url)
        .env("RELANCE_ADMIN_TOKEN", OPERATOR)
        .args(["customers", "recount-behaviour", "--all", "--reason", "x"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--all needs --tenant"));
}
