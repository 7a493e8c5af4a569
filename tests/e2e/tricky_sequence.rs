//! The tricky sequence of docs/events.md, published from Python (librdkafka through
//! confluent-kafka) as a billing system in another language would, ends in the documented
//! state.

use std::time::Duration;

use relance_config::ServiceName;
use relance_e2e::service_binary;
use relance_testkit::{
    create_unique_database, create_unique_topics, repo_root, service_env, settings_overrides,
    test_settings, unique_name, wait_for, ServiceProcess,
};

#[tokio::test]
async fn the_tricky_sequence_published_from_python_ends_in_the_documented_state() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    settings.kafka.topics = create_unique_topics(&settings, "tricky", 4).await;
    settings.ingestor.group_id = unique_name("tricky");
    let mut ingestor = ServiceProcess::spawn(
        &service_binary("ingestor"),
        service_env(&settings_overrides(&settings)),
    )
    .await;

    let python = std::env::var("RELANCE_PYTHON").expect(
        "RELANCE_PYTHON names the Python with confluent-kafka: run scripts/install-python-tools.sh and source scripts/env.sh (make test does)",
    );
    let topics = &settings.kafka.topics;
    let output = tokio::process::Command::new(python)
        .arg(repo_root().join("scripts/publish_tricky_sequence.py"))
        .args(["--bootstrap", &settings.kafka.bootstrap_servers])
        .args([
            "--invoices-topic",
            &topics.invoices,
            "--payments-topic",
            &topics.payments,
            "--customers-topic",
            &topics.customers,
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let pool = relance_storage::lazy_pool(&settings.database, "e2e");
    wait_for(Duration::from_secs(60), "the 8 distinct events", || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
            .fetch_one(&pool)
            .await
            .ok()?;
        (count >= 8).then_some(())
    })
    .await;
    let (state, amount_due, currency, due_on): (String, i64, String, chrono::NaiveDate) = sqlx::query_as(
        "SELECT state, amount_due_minor, currency, due_on FROM invoices WHERE invoice_id = 'inv_tricky'",
    )
    .fetch_one(&pool)
    .await
    .expect("the invoice exists");
    assert_eq!(
        (
            state.as_str(),
            amount_due,
            currency.as_str(),
            due_on.to_string().as_str()
        ),
        ("partially_paid", 8_000, "EUR", "2026-12-31"),
        "as docs/events.md promises"
    );
    let (legal_name, open_balance): (String, serde_json::Value) = sqlx::query_as(
        "SELECT legal_name, open_balance FROM customers WHERE customer_id = 'cus_tricky'",
    )
    .fetch_one(&pool)
    .await
    .expect("the customer exists");
    assert_eq!(legal_name, "Tricky SAS");
    assert_eq!(open_balance, serde_json::json!({"EUR": 8000}));
    let status = ingestor
        .signal_and_wait("TERM", Duration::from_secs(10))
        .await;
    assert!(status.success());
}
