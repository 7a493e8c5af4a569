//! Billing events in, emails out: the ingestor, the scheduler and the sender as processes turn
//! an overdue invoice into a well-formed reminder in the file provider's folder.

use std::time::Duration;

use chrono::{Days, Utc};
use relance_config::ServiceName;
use relance_e2e::service_binary;
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_testkit::{
    create_unique_database, create_unique_topics, service_env, settings_overrides, test_settings,
    unique_name, wait_for, ServiceProcess,
};
use serde_json::{json, Value};

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(
        relance_testkit::repo_root().join(format!("proto/examples/{name}.json")),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn an_overdue_invoice_becomes_a_reminder_email_in_the_outgoing_folder() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    settings.kafka.topics = create_unique_topics(&settings, "emails", 4).await;
    settings.ingestor.group_id = unique_name("emails-ingestor");
    settings.sender.group_id = unique_name("emails-sender");
    let folder = tempfile::tempdir().unwrap();
    let mut overrides = settings_overrides(&settings);
    overrides.push((
        "RELANCE__SENDER__PROVIDERS__FILE__FOLDER",
        folder.path().display().to_string(),
    ));
    overrides.push((
        "RELANCE__SENDER__IDENTITY__COMPANY_NAME",
        "Acme Logiciels".into(),
    ));
    // One simulated clock for the three services, ten hours a second from now: the next send
    // window (business hours in Paris) comes within seconds whenever the test runs.
    let epoch = Utc::now().to_rfc3339();
    overrides.push(("RELANCE__RUNTIME__CLOCK__SPEED", "36000".into()));
    overrides.push(("RELANCE__RUNTIME__CLOCK__EPOCH", epoch));
    let mut processes = Vec::new();
    for service in ["ingestor", "scheduler", "sender"] {
        processes
            .push(ServiceProcess::spawn(&service_binary(service), service_env(&overrides)).await);
    }

    let today = Utc::now().date_naive();
    let mut customer = example("billing.customer.upserted.v1");
    customer["time"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut invoice = example("billing.invoice.issued.v1");
    invoice["time"] = customer["time"].clone();
    invoice["data"]["issued_on"] =
        json!(today.checked_sub_days(Days::new(34)).unwrap().to_string());
    invoice["data"]["due_on"] = json!(today.checked_sub_days(Days::new(4)).unwrap().to_string());
    let producer = EventProducer::new(&settings.kafka, "e2e").unwrap();
    for (topic, event) in [
        (&settings.kafka.topics.customers, &customer),
        (&settings.kafka.topics.invoices, &invoice),
    ] {
        producer
            .send(&OutgoingRecord {
                topic: topic.clone(),
                key: Some(b"cus_8Hq2LmT4".to_vec()),
                payload: serde_json::to_vec(event).unwrap(),
                headers: vec![],
            })
            .await
            .unwrap();
    }

    let eml_path = wait_for(
        Duration::from_secs(90),
        "a reminder email in the folder",
        || async {
            std::fs::read_dir(folder.path())
                .ok()?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.extension().is_some_and(|ext| ext == "eml"))
        },
    )
    .await;
    let eml = std::fs::read_to_string(&eml_path).unwrap();
    let (headers, body) = eml
        .split_once("\r\n\r\n")
        .expect("headers, a blank line, a body");
    assert!(
        headers.contains("To: \"Camille Durand\" <camille.durand@boulangerie-durand.example>"),
        "{headers}"
    );
    assert!(
        headers.contains("MIME-Version: 1.0") && headers.contains("Message-ID: <"),
        "{headers}"
    );
    assert!(
        headers
            .lines()
            .any(|line| line.starts_with("Subject: =?UTF-8?B?")),
        "{headers}"
    );
    assert!(
        body.contains("Content-Type: text/plain; charset=utf-8")
            && body.contains("Content-Type: text/html; charset=utf-8")
    );
    assert!(eml.trim_end().ends_with("--"), "a closed multipart body");

    let pool = relance_storage::lazy_pool(&settings.database, "e2e");
    // The file is written by the provider call; the outcome is committed just after it.
    let (step, recipient): (String, Option<String>) = wait_for(
        Duration::from_secs(20),
        "the delivery to be recorded as sent",
        || async {
            sqlx::query_as(
                "SELECT step_id, recipient FROM deliveries
                 WHERE status = 'sent' ORDER BY received_at LIMIT 1",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert!(
        ["first_reminder", "second_reminder"].contains(&step.as_str()),
        "{step}"
    );
    assert_eq!(
        recipient.as_deref(),
        Some("camille.durand@boulangerie-durand.example")
    );
    for mut process in processes {
        assert!(process
            .signal_and_wait("TERM", Duration::from_secs(20))
            .await
            .success());
    }
    // Exactly one file per message sent. A sender stopped between writing a file and committing
    // its outcome leaves that delivery in doubt (sending_since set): its next life settles it
    // with the provider, so it counts as a message that may have gone.
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE status = 'sent' OR sending_since IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let files = std::fs::read_dir(folder.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
        .count();
    assert_eq!(files as i64, sent);
}
