//! Issue 14, item 1: an admin token acts only for its tenants and within its role. A token of
//! another tenant gets 404 on every route about acme's data (what it may not see does not
//! exist for it) and changes nothing; a read-only token changes nothing; dead letters need an
//! operator for every tenant.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use relance_config::ServiceName;
use relance_domain::{Currency, InvoiceFact, Money};
use relance_scheduler::metrics::SchedulerMetrics;
use relance_scheduler::planner::Scheduler;
use relance_scheduler::policies::PolicySet;
use relance_testkit::{
    create_unique_database, create_unique_topics, customer_event, invoice_event, seed,
    test_settings,
};

const OPERATOR: &str = "dev-only-admin-token-not-for-production";
const ACME: &str = "dev-only-credit-manager-acme-token-0001";
const GLOBEX: &str = "dev-only-credit-manager-globex-token-0001";
const VIEWER: &str = "dev-only-read-only-token-not-for-production";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_token_acts_only_for_its_tenants_and_within_its_role() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "tenancy", 1).await;
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
    let metrics = SchedulerMetrics::register(&prometheus::Registry::new()).unwrap();
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
    assert_eq!(scheduler.tick(now).await.unwrap().awaiting_approval, 1);
    let reminder: uuid::Uuid =
        sqlx::query_scalar("SELECT reminder_id FROM reminders WHERE status = 'awaiting_approval'")
            .fetch_one(&pool)
            .await
            .unwrap();

    let url = crate::serve_admin_api(&settings, pool.clone(), now).await;
    let http = reqwest::Client::new();
    let call = |token: &'static str,
                method: &'static str,
                path: String,
                body: Option<serde_json::Value>| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut request = http
                .request(method.parse().unwrap(), format!("{url}{path}"))
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let reason = Some(serde_json::json!({"reason": "checking"}));
    // Every route about acme's data, as the admin API lists them.
    let routes: Vec<(&'static str, String, Option<serde_json::Value>)> = vec![
        (
            "PATCH",
            format!("/v1/approvals/{reminder}"),
            Some(serde_json::json!({"channel": "sms"})),
        ),
        (
            "POST",
            format!("/v1/approvals/{reminder}/approve"),
            Some(serde_json::json!({})),
        ),
        (
            "POST",
            format!("/v1/approvals/{reminder}/reject"),
            reason.clone(),
        ),
        ("POST", "/v1/invoices/inv_vip/pause".into(), reason.clone()),
        ("POST", "/v1/invoices/inv_vip/resume".into(), reason.clone()),
        (
            "POST",
            "/v1/invoices/inv_vip/settle-claim".into(),
            reason.clone(),
        ),
        (
            "POST",
            "/v1/invoices/inv_vip/cancel-promise".into(),
            reason.clone(),
        ),
        ("GET", "/v1/invoices/inv_vip/timeline".into(), None),
        ("POST", "/v1/customers/cus_vip/pause".into(), reason.clone()),
        (
            "POST",
            "/v1/customers/cus_vip/resume".into(),
            reason.clone(),
        ),
    ];
    for (method, path, body) in &routes {
        let (status, answer) = call(GLOBEX, method, path.clone(), body.clone()).await;
        assert_eq!(status, 404, "globex on {method} {path}: {answer}");
    }
    // Lists show nothing of acme to globex.
    let (status, approvals) = call(GLOBEX, "GET", "/v1/approvals".into(), None).await;
    assert_eq!((status, approvals), (200, serde_json::json!([])));
    let (status, approvals) = call(GLOBEX, "GET", "/v1/approvals?tenant=acme".into(), None).await;
    assert_eq!((status, approvals), (200, serde_json::json!([])));
    // Dead letters span tenants: only an operator for every tenant.
    for token in [GLOBEX, ACME, VIEWER] {
        let (status, _) = call(token, "GET", "/v1/dead-letters".into(), None).await;
        assert_eq!(status, 403);
        let (status, _) = call(
            token,
            "POST",
            "/v1/dead-letters/replay".into(),
            Some(serde_json::json!({"reason": "invalid_json", "note": "fixed"})),
        )
        .await;
        assert_eq!(status, 403);
    }
    // A read-only token reads but changes nothing.
    for (method, path, body) in routes.iter().filter(|route| route.0 != "GET") {
        let (status, answer) = call(VIEWER, method, path.clone(), body.clone()).await;
        assert_eq!(status, 403, "viewer on {method} {path}: {answer}");
    }
    let (status, timeline) =
        call(VIEWER, "GET", "/v1/invoices/inv_vip/timeline".into(), None).await;
    assert_eq!(status, 200, "{timeline}");
    let changed: i64 = sqlx::query_scalar("SELECT count(*) FROM manual_actions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(changed, 0, "nothing was changed by a token that may not");
    let status: String = sqlx::query_scalar("SELECT status FROM reminders WHERE reminder_id = $1")
        .bind(reminder)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "awaiting_approval");

    // Found by `make chaos` (issue 13): two reminders of one customer approved together left
    // together. An approval that would break the policy's gap is refused with when it may go.
    sqlx::query(
        "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids,
                                kind, trigger, step_id, channel, segment, status, scheduled_for,
                                policy_id, policy_version, topic, command)
         VALUES ($1, 'other-step', 'acme', 'cus_vip', ARRAY['inv_other'], 'message', '{}',
                 'courtesy', 'email', 'vip', 'queued', $2, 'default', 1, 'relance.reminders',
                 '{}')",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(now - chrono::Duration::days(1))
    .execute(&pool)
    .await
    .unwrap();
    let (status, answer) = call(
        ACME,
        "POST",
        format!("/v1/approvals/{reminder}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "too_soon", "{answer}");
    sqlx::query("UPDATE reminders SET scheduled_for = $1 WHERE idempotency_key = 'other-step'")
        .bind(now - chrono::Duration::days(4))
        .execute(&pool)
        .await
        .unwrap();

    // acme's credit manager approves; the action records tenant, holder and role.
    let (status, answer) = call(
        ACME,
        "POST",
        format!("/v1/approvals/{reminder}/approve"),
        Some(serde_json::json!({"note": "called the customer"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (tenant, actor, role): (String, String, Option<String>) = sqlx::query_as(
        "SELECT tenant, actor, details->>'actor_role' FROM manual_actions WHERE action = 'approve'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (tenant.as_str(), actor.as_str(), role.as_deref()),
        ("acme", "dev-credit-manager-acme", Some("credit_manager"))
    );
    let (status, _) = call(OPERATOR, "GET", "/v1/dead-letters".into(), None).await;
    assert_eq!(status, 200);
}

fn issued(tenant: &str, now: DateTime<Utc>) -> relance_domain::BookEvent {
    invoice_event(
        tenant,
        "cus_same",
        "F-2026-0001",
        &format!("issued-{tenant}"),
        now,
        InvoiceFact::Issued {
            number: "F-2026-0001".into(),
            issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            total: Money::new(25_000, Currency::parse("EUR").unwrap()).unwrap(),
            order_reference: None,
            payment_url: None,
            contact: None,
            description: None,
        },
    )
}

/// Issue 14, item 2: two billing entities numbering an invoice and a customer alike have two
/// records; a token that sees both names the tenant, and a change reaches only that one.
#[tokio::test]
async fn the_same_ids_in_two_tenants_are_two_records_and_a_person_says_which() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "same-ids", 1).await;
    let now = utc("2026-12-10T09:00:00Z");
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_same", false, now),
            customer_event("globex", "cus_same", false, now),
            issued("acme", now),
            issued("globex", now),
        ],
        now,
    )
    .await;
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    let url = crate::serve_admin_api(&settings, pool.clone(), now).await;
    let http = reqwest::Client::new();
    let call = |token: &'static str, path: &str, body: Option<serde_json::Value>| {
        let request = match body {
            Some(body) => http.post(format!("{url}{path}")).json(&body),
            None => http.get(format!("{url}{path}")),
        };
        async move {
            let response = request.bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let state_of = |tenant: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, bool)>(
                "SELECT i.state, c.held FROM invoices i JOIN customers c USING (tenant, customer_id)
                 WHERE i.tenant = $1 AND i.invoice_id = 'F-2026-0001'",
            )
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let reason = Some(serde_json::json!({"reason": "checking"}));

    // globex's token sees only globex's invoice of that number: no need to say which.
    let (status, answer) = call(GLOBEX, "/v1/invoices/F-2026-0001/pause", reason.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(state_of("globex").await.0, "paused");
    assert_ne!(
        state_of("acme").await.0,
        "paused",
        "acme's is another invoice"
    );
    // Naming a tenant it does not see finds nothing.
    let (status, _) = call(
        GLOBEX,
        "/v1/invoices/F-2026-0001/timeline?tenant=acme",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A token for every tenant must say which.
    let (status, answer) = call(OPERATOR, "/v1/invoices/F-2026-0001/timeline", None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "ambiguous_tenant", "{answer}");
    let (status, answer) = call(OPERATOR, "/v1/customers/cus_same/pause", reason.clone()).await;
    assert_eq!(
        (status, &answer["error"]),
        (409, &serde_json::json!("ambiguous_tenant"))
    );
    let (status, timeline) = call(
        OPERATOR,
        "/v1/invoices/F-2026-0001/timeline?tenant=acme",
        None,
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["tenant"], "acme");
    assert!(
        !timeline.to_string().contains("checking"),
        "globex's pause is not on acme's timeline: {timeline}"
    );

    // relancectl --tenant names it.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .env("RELANCE_ADMIN_URL", &url)
        .env("RELANCE_ADMIN_TOKEN", OPERATOR)
        .args([
            "customers",
            "pause",
            "cus_same",
            "--reason",
            "dispute on the phone",
            "--tenant",
            "acme",
        ])
        .output()
        .await
        .expect("relancectl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(state_of("acme").await.1, "acme's customer is held");
    assert!(!state_of("globex").await.1, "globex's customer is not");
    let actions: Vec<(String, String, String)> =
        sqlx::query_as("SELECT tenant, subject_kind, action FROM manual_actions ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            ("globex".into(), "invoice".into(), "pause".into()),
            ("acme".into(), "customer".into(), "pause".into())
        ]
    );
}
