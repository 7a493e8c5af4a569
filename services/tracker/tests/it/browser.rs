//! Each action page in headless Chromium at phone width, driven by Selenium as a customer would
//! use it: the page fits, its fields have labels, the form submits, and the state changes in
//! the database. Screenshots go to test-artifacts/browser/.

use std::time::Duration;

use relance_links::LinkAction;
use serde_json::json;

use crate::helpers::{
    claims, count, fresh_settings, invoice_state, pool, sent_reminder, spawn_tracker, url,
};

#[tokio::test]
async fn every_action_page_works_in_a_phone_sized_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    }
    let python = std::env::var("RELANCE_PYTHON").expect(
        "RELANCE_PYTHON names the Python with selenium: run scripts/install-python-tools.sh and source scripts/env.sh (make test does)",
    );
    let settings = fresh_settings("browser").await;
    let pool = pool(&settings);
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let promised = (chrono::Utc::now().date_naive() + chrono::Days::new(12)).to_string();
    let cases = [
        (
            "already-paid",
            LinkAction::AlreadyPaid,
            json!({"reference": "VIR 2026-11-30"}),
            "payment_claimed",
        ),
        (
            "dispute",
            LinkAction::Dispute,
            json!({"reason": "not_received", "message": "Rien reçu à ce jour."}),
            "dispute",
        ),
        (
            "promise",
            LinkAction::PromiseToPay,
            json!({"promised_on": promised}),
            "promise_to_pay",
        ),
        (
            "payment-plan",
            LinkAction::PaymentPlan,
            json!({"installments": "6", "message": "Trésorerie tendue ce trimestre."}),
            "",
        ),
    ];
    let mut pages = Vec::new();
    for (name, action, fields, _) in &cases {
        let sent = sent_reminder(
            &settings,
            &format!("cus_browser_{name}"),
            &format!("inv_browser_{name}"),
        )
        .await;
        pages.push(json!({"name": name, "url": url(&base, &claims(&sent, *action)), "fields": fields, "expect": "noté"}));
    }
    let artifacts = relance_testkit::repo_root().join("test-artifacts/browser");
    let pages_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pages_file.path(), serde_json::to_vec(&pages).unwrap()).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .arg(relance_testkit::repo_root().join("scripts/browser_check_actions.py"))
            .arg("--pages")
            .arg(pages_file.path())
            .arg("--artifacts")
            .arg(&artifacts)
            .output(),
    )
    .await
    .expect("the browser finishes within two minutes")
    .expect("python runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (name, _, _, pause) in &cases {
        assert!(
            report.contains(&format!("{{\"page\": \"{name}\", \"problems\": []}}")),
            "{name}: {report}"
        );
        assert!(
            artifacts.join(format!("{name}-form.png")).is_file()
                && artifacts.join(format!("{name}-done.png")).is_file()
        );
        let invoice = format!("inv_browser_{name}");
        assert_eq!(
            count(
                &pool,
                &format!("SELECT count(*) FROM customer_actions WHERE invoice_id = '{invoice}'")
            )
            .await,
            1,
            "{name}"
        );
        let expected = (!pause.is_empty()).then(|| pause.to_string());
        assert_eq!(invoice_state(&pool, &invoice).await.1, expected, "{name}");
    }
    let reference: Option<String> = sqlx::query_scalar(
        "SELECT reference FROM customer_actions WHERE invoice_id = 'inv_browser_already-paid'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reference.as_deref(), Some("VIR 2026-11-30"));
    tracker
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
