//! A record refused for its content is dead-lettered, listed with `relancectl dlq list`, and —
//! once a person fixes the cause — replayed with `relancectl dlq replay`: the scheduler
//! publishes the original again through its outbox, and the ingestor applies it.

use std::time::Duration;

use relance_config::ServiceName;
use relance_e2e::{logged_address, service_binary};
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_testkit::{
    create_unique_database, create_unique_topics, service_env, settings_overrides, test_settings,
    unique_name, wait_for, ServiceProcess,
};
use serde_json::{json, Value};

const TOKEN: &str = "dev-only-admin-token-not-for-production";

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(
        relance_testkit::repo_root().join(format!("proto/examples/{name}.json")),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn relancectl(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(service_binary("relancectl"))
        .env("RELANCE_ADMIN_URL", url)
        .env("RELANCE_ADMIN_TOKEN", TOKEN)
        .args(args)
        .output()
        .await
        .expect("relancectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_dead_letter_replayed_once_its_cause_is_fixed_is_applied() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    settings.kafka.topics = create_unique_topics(&settings, "replay", 2).await;
    settings.ingestor.group_id = unique_name("replay-ingestor");
    let mut overrides = settings_overrides(&settings);
    overrides.push(("RELANCE__OUTBOX__POLL_INTERVAL_MS", "100".into()));
    let mut processes = Vec::new();
    for service in ["ingestor", "scheduler"] {
        processes
            .push(ServiceProcess::spawn(&service_binary(service), service_env(&overrides)).await);
    }
    let admin_url = format!(
        "http://{}",
        logged_address(&mut processes[1], "Serving the admin API").await
    );

    // The billing system first sends the invoice under the wrong customer, then the right one:
    // the second is refused (an invoice never changes customer) and dead-lettered.
    let right = example("billing.invoice.issued.v1");
    let mut wrong = right.clone();
    wrong["id"] = json!("evt_wrong_customer");
    wrong["data"]["customer_id"] = json!("cus_typo");
    wrong["partitionkey"] = json!("cus_typo");
    let invoice_id = right["data"]["invoice_id"].as_str().unwrap().to_string();
    let producer = EventProducer::new(&settings.kafka, "e2e").unwrap();
    let pool = relance_storage::lazy_pool(&settings.database, "e2e");
    for event in [&wrong, &right] {
        producer
            .send(&OutgoingRecord {
                topic: settings.kafka.topics.invoices.clone(),
                key: Some(event["partitionkey"].as_str().unwrap().as_bytes().to_vec()),
                payload: serde_json::to_vec(event).unwrap(),
                headers: vec![],
            })
            .await
            .unwrap();
        // In this order: the keys differ, so the partitions may too.
        wait_for(
            Duration::from_secs(60),
            "the event to be processed",
            || async {
                let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
                let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
                (processed + dead >= if event["id"] == wrong["id"] { 1 } else { 2 }).then_some(())
            },
        )
        .await;
    }
    let dead_letter_id: i64 = wait_for(
        Duration::from_secs(60),
        "the second invoice event to be dead-lettered",
        || async {
            sqlx::query_scalar("SELECT id FROM dead_letters WHERE reason = 'customer_mismatch'")
                .fetch_optional(&pool)
                .await
                .unwrap()
        },
    )
    .await;

    let (ok, stdout, stderr) = wait_for(
        Duration::from_secs(30),
        "the admin API to answer",
        || async {
            let result = relancectl(
                &admin_url,
                &["dlq", "list", "--reason", "customer_mismatch"],
            )
            .await;
            (result.0 || !result.2.contains("error sending request")).then_some(result)
        },
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("{dead_letter_id} "))
            && stdout.contains("ingestor")
            && stdout.contains(&settings.kafka.topics.invoices),
        "{stdout}"
    );

    // Replaying needs a note saying what was fixed.
    let (ok, _, stderr) = relancectl(
        &admin_url,
        &["dlq", "replay", &dead_letter_id.to_string(), "--note", " "],
    )
    .await;
    assert!(!ok && stderr.contains("400"), "{stderr}");

    // A person removes the invoice the typo created, then replays the dead letter.
    sqlx::query("DELETE FROM invoices WHERE invoice_id = $1")
        .bind(&invoice_id)
        .execute(&pool)
        .await
        .unwrap();
    let (ok, stdout, stderr) = relancectl(
        &admin_url,
        &[
            "dlq",
            "replay",
            &dead_letter_id.to_string(),
            "--note",
            "Removed the invoice created under cus_typo",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("1 dead letters published again by dev-operator"),
        "{stdout}"
    );

    let customer: String = wait_for(
        Duration::from_secs(60),
        "the replayed invoice to be applied",
        || async {
            sqlx::query_scalar("SELECT customer_id FROM invoices WHERE invoice_id = $1")
                .bind(&invoice_id)
                .fetch_optional(&pool)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(customer, "cus_8Hq2LmT4");
    let (actor, note): (String, Option<String>) = sqlx::query_as(
        "SELECT actor, reason FROM manual_actions WHERE subject_kind = 'dead_letter' AND action = 'replay'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (actor.as_str(), note.as_deref()),
        (
            "dev-operator",
            Some("Removed the invoice created under cus_typo")
        )
    );
    let (ok, stdout, _) =
        relancectl(&admin_url, &["--json", "dlq", "list", "--not-replayed"]).await;
    assert!(ok);
    assert_eq!(stdout.trim(), "[]", "the replayed dead letter is marked so");
    // Only one dead letter: the replay was applied, not refused again.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    for mut process in processes {
        assert!(process
            .signal_and_wait("TERM", Duration::from_secs(20))
            .await
            .success());
    }
}
