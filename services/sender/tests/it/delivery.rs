//! Delivery end to end: commands on the reminders topic, invoices in PostgreSQL, the sender
//! process, a provider. Never a message after a payment, never the same message twice.

use std::time::Duration;

use base64::Engine as _;
use relance_ingestor::handler::IngestHandler;
use relance_ingestor::metrics::IngestMetrics;
use relance_kafka::{BatchHandler, ConsumedRecord};
use relance_links::{LinkAction, LinkSigner};
use relance_runtime::SystemClock;
use relance_testkit::{read_topic, wait_for};
use serde_json::json;

use crate::helpers::{
    command, counter, deliveries, fresh_settings, payment_record, pool, postmark_env, publish,
    seed_invoice, settled, spawn_sender, FakePostmark, PARTITIONS, TENANT,
};

const SETTLE: Duration = Duration::from_secs(60);

fn header<'a>(record: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    record
        .header(name)
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// The base64 parts of a MIME message, decoded, in order.
fn mime_parts(eml: &str) -> Vec<String> {
    eml.split("Content-Transfer-Encoding: base64\r\n\r\n")
        .skip(1)
        .map(|part| {
            let encoded: String = part
                .split("\r\n--")
                .next()
                .unwrap_or_default()
                .lines()
                .collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_command_becomes_a_well_formed_email_in_the_file_providers_folder() {
    let settings = fresh_settings("file").await;
    let folder = tempfile::tempdir().unwrap();
    seed_invoice(&settings, "cus_file", "inv_file").await;
    let reminder = command("cus_file", "inv_file", "camille.durand@example.fr");
    publish(&settings, std::slice::from_ref(&reminder)).await;
    let mut sender = spawn_sender(
        &settings,
        &[(
            "RELANCE__SENDER__PROVIDERS__FILE__FOLDER",
            folder.path().display().to_string(),
        )],
    )
    .await;
    let rows = settled(&pool(&settings), 1, SETTLE).await;
    assert_eq!(rows[0].status, "sent", "{rows:?}");
    let send_id = rows[0]
        .provider_message_id
        .clone()
        .unwrap()
        .trim_start_matches("file:")
        .to_string();
    let eml = std::fs::read_to_string(folder.path().join(format!("{send_id}.eml"))).unwrap();
    assert!(folder.path().join(format!("{send_id}.html")).exists());

    let (headers, _) = eml.split_once("\r\n\r\n").unwrap();
    for expected in [
        "From: \"Billing\" <billing@example.com>",
        "To: \"Camille Durand\" <camille.durand@example.fr>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative;",
    ] {
        assert!(
            headers.contains(expected),
            "{expected} missing from:\n{headers}"
        );
    }
    let parsed = mailparse::parse_mail(eml.as_bytes()).unwrap();
    let subject =
        mailparse::MailHeaderMap::get_first_value(&parsed.get_headers(), "Subject").unwrap();
    assert_eq!(subject, "Facture F-inv_file : règlement en attente");
    assert_eq!(rows[0].subject.as_deref(), Some(subject.as_str()));

    let parts = mime_parts(&eml);
    let (text, html) = (&parts[0], &parts[1]);
    for expected in [
        "Bonjour Camille Durand,",
        "F-inv_file",
        "734,56\u{a0}€",
        "12 décembre 2026",
        "commande PO-77812",
        "Service comptabilité, Example",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from the text part:\n{text}"
        );
    }
    assert!(html.contains("data-role=\"call-to-action\""), "{html}");
    // The pay link is signed for this tenant, invoice, customer and reminder.
    let link = text
        .lines()
        .find_map(|line| line.strip_prefix("Régler en ligne : "))
        .expect("the call to action in the text part");
    let token = link
        .strip_prefix("http://127.0.0.1:8082/l/pay/")
        .expect("a link to the tracker");
    let signer = LinkSigner::from_text(
        &std::fs::read_to_string(relance_testkit::config_dir().join("dev-link-keys")).unwrap(),
    )
    .unwrap();
    let claims = signer
        .verify(token, chrono::Utc::now().timestamp())
        .expect("a valid signature");
    assert_eq!(
        (
            claims.t.as_str(),
            claims.i.as_str(),
            claims.c.as_str(),
            claims.a
        ),
        (TENANT, "inv_file", "cus_file", LinkAction::Pay)
    );
    assert_eq!(
        claims.r.to_string(),
        reminder["data"]["reminder_id"].as_str().unwrap()
    );
    let html_body = std::fs::read_to_string(folder.path().join(format!("{send_id}.html"))).unwrap();
    assert_eq!(&html_body, html);

    // The audit trail: the row keeps a hash of the body, the event says what was sent.
    let expected_hash = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(html.as_bytes());
        hasher.update([0u8]);
        hasher.update(text.as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    assert_eq!(rows[0].body_sha256.as_deref(), Some(expected_hash.as_str()));
    let events = read_topic(
        &settings,
        &settings.kafka.topics.events,
        PARTITIONS,
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        header(&events[0], "ce_type"),
        Some("relance.dunning.reminder_sent")
    );
    let event: serde_json::Value =
        serde_json::from_slice(events[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(event["data"]["provider"], json!("file"));
    assert_eq!(event["data"]["body_sha256"], json!(expected_hash));
    assert_eq!(
        event["data"]["recipient_address"],
        json!("camille.durand@example.fr")
    );
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_reminders_sent_total",
            &[
                ("provider", "file"),
                ("step", "first_reminder"),
                ("channel", "email")
            ]
        ),
        1.0,
        "{metrics}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_payment_ingested_after_the_command_was_published_means_nothing_is_sent() {
    let settings = fresh_settings("paid").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_paid", "inv_paid").await;
    publish(
        &settings,
        &[command("cus_paid", "inv_paid", "paid@example.fr")],
    )
    .await;
    // The billing system reports the payment; the ingestor records it before the sender runs.
    let producer = relance_kafka::EventProducer::new(&settings.kafka, "test").unwrap();
    let mut ingestor = IngestHandler::new(
        pool(&settings),
        std::sync::Arc::new(SystemClock),
        relance_kafka::DeadLetterWriter::new(
            producer,
            settings.kafka.topics.dlq.clone(),
            "ingestor",
        ),
        settings.kafka.topics.events.clone(),
        IngestMetrics::register(&prometheus::Registry::new()).unwrap(),
        relance_kafka::KafkaMetrics::register(&prometheus::Registry::new()).unwrap(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    ingestor
        .handle(&[payment_record(&settings, "inv_paid", "cus_paid")])
        .await
        .expect("the payment applies");
    let state: (String, Option<String>) =
        sqlx::query_as("SELECT state, closed_reason FROM invoices WHERE invoice_id = 'inv_paid'")
            .fetch_one(&pool(&settings))
            .await
            .unwrap();
    assert_eq!(
        state,
        ("closed".to_string(), Some("paid".to_string())),
        "the ingestor recorded the payment"
    );

    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 1, SETTLE).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].skip_reason.as_deref()),
        ("skipped", Some("invoice_paid"))
    );
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing reached the provider"
    );
    assert!(fake.accepted_counts().is_empty());
    let events = wait_for(
        Duration::from_secs(20),
        "the skip to be published",
        || async {
            // The ingestor's state change is on the topic too.
            let records = read_topic(
                &settings,
                &settings.kafka.topics.events,
                PARTITIONS,
                2,
                Duration::from_secs(2),
            )
            .await;
            records.into_iter().find(|record| {
                header(record, "ce_type") == Some("relance.dunning.reminder_skipped")
            })
        },
    )
    .await;
    let event: serde_json::Value =
        serde_json::from_slice(events.payload.as_deref().unwrap()).unwrap();
    assert_eq!(event["data"]["reason"], json!("invoice_paid"));
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_reminders_skipped_total",
            &[("reason", "invoice_paid")]
        ),
        1.0,
        "{metrics}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn the_same_command_delivered_twice_makes_one_message() {
    let settings = fresh_settings("twice").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_twice", "inv_twice").await;
    let reminder = command("cus_twice", "inv_twice", "twice@example.fr");
    publish(&settings, &[reminder.clone(), reminder.clone()]).await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 1, SETTLE).await;
    assert_eq!(rows[0].status, "sent");
    // Redelivered later too (after a rebalance, say): still nothing new.
    publish(&settings, &[reminder]).await;
    wait_for(
        Duration::from_secs(30),
        "the third copy to be consumed",
        || async {
            let (_, metrics) = sender.get("/metrics").await;
            (counter(
                &metrics,
                "relance_sender_commands_total",
                &[("outcome", "duplicate")],
            ) >= 2.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(deliveries(&pool(&settings)).await.len(), 1);
    assert_eq!(
        fake.accepted_counts().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_provider_error_then_success_makes_one_message() {
    let settings = fresh_settings("retry").await;
    let fake = FakePostmark {
        fail_first: std::sync::Arc::new(std::sync::Mutex::new(1)),
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_retry", "inv_retry").await;
    publish(
        &settings,
        &[command("cus_retry", "inv_retry", "retry@example.fr")],
    )
    .await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 1, SETTLE).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 2),
        "{rows:?}"
    );
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2,
        "a 500, then a 200"
    );
    assert_eq!(
        fake.accepted_counts().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_reminder_retries_total",
            &[("provider", "postmark"), ("class", "transient")]
        ),
        1.0
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_refused_message_goes_to_the_dead_letter_topic_and_the_next_is_still_sent() {
    let settings = fresh_settings("refused").await;
    let fake = FakePostmark {
        refused_recipients: vec!["refused@".into()],
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_refused", "inv_refused").await;
    seed_invoice(&settings, "cus_next", "inv_next").await;
    let refused = command("cus_refused", "inv_refused", "refused@example.fr");
    publish(&settings, std::slice::from_ref(&refused)).await;
    publish(
        &settings,
        &[command("cus_next", "inv_next", "next@example.fr")],
    )
    .await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 2, SETTLE).await;
    let by_key = |key: &str| {
        rows.iter()
            .find(|row| row.idempotency_key.contains(key))
            .unwrap()
    };
    assert_eq!(
        (
            by_key("inv_refused").status.as_str(),
            by_key("inv_refused").error_code.as_deref()
        ),
        ("failed", Some("300"))
    );
    assert_eq!(
        by_key("inv_refused").attempts,
        1,
        "a validation error is not retried"
    );
    assert_eq!(by_key("inv_next").status, "sent");

    let dead = read_topic(
        &settings,
        &settings.kafka.topics.dlq,
        PARTITIONS,
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header(&dead[0], "relance_dlq_reason"),
        Some("provider_rejected")
    );
    let body: serde_json::Value =
        serde_json::from_slice(dead[0].payload.as_deref().unwrap()).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("postmark 300: Invalid 'To' address"),
        "{body}"
    );
    assert_eq!(
        body["event"]["id"], refused["id"],
        "the original command, untouched"
    );
    let tasks = read_topic(
        &settings,
        &settings.kafka.topics.tasks,
        PARTITIONS,
        1,
        Duration::from_secs(20),
    )
    .await;
    let task: serde_json::Value =
        serde_json::from_slice(tasks[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(task["data"]["kind"], json!("manual_review"));
    let (_, metrics) = sender.get("/metrics").await;
    assert_eq!(
        counter(
            &metrics,
            "relance_reminders_failed_total",
            &[("reason", "provider_rejected")]
        ),
        1.0
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_sender_killed_during_a_batch_loses_no_message_and_doubles_none() {
    const COUNT: usize = 20;
    let settings = fresh_settings("sigkill").await;
    let fake = FakePostmark {
        delay: Duration::from_secs(3),
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    let mut commands = Vec::new();
    for index in 0..COUNT {
        let (customer, invoice) = (format!("cus_kill_{index}"), format!("inv_kill_{index}"));
        seed_invoice(&settings, &customer, &invoice).await;
        commands.push(command(
            &customer,
            &invoice,
            &format!("kill{index}@example.fr"),
        ));
    }
    publish(&settings, &commands).await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    // Kill it while Postmark holds a batch request open.
    wait_for(
        Duration::from_secs(60),
        "a batch to reach Postmark",
        || async {
            fake.requests
                .lock()
                .unwrap()
                .iter()
                .any(|size| *size > 1)
                .then_some(())
        },
    )
    .await;
    sender
        .signal_and_wait("KILL", Duration::from_secs(10))
        .await;
    let in_flight: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'in_flight'")
            .fetch_one(&pool(&settings))
            .await
            .unwrap();
    assert!(in_flight > 1, "the kill left a batch in flight");

    let mut restarted = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), COUNT, Duration::from_secs(90)).await;
    assert!(rows.iter().all(|row| row.status == "sent"), "{rows:?}");
    let counts = fake.accepted_counts();
    assert_eq!(counts.len(), COUNT, "every reminder reached Postmark");
    assert!(
        counts.values().all(|count| *count == 1),
        "none twice: {counts:?}"
    );
    let (_, metrics) = restarted.get("/metrics").await;
    assert!(
        counter(
            &metrics,
            "relance_delivery_reconciliations_total",
            &[("result", "found")]
        ) >= 1.0,
        "{metrics}"
    );
    restarted
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

/// Found by `make chaos` (issue 13): a payment of one invoice cancelled a two-invoice reminder
/// while a relay was publishing its command. The scheduler plans the other invoice again, so
/// this copy must not go out about it: it would be a second reminder within the gap.
#[tokio::test]
async fn a_command_whose_reminder_was_cancelled_meanwhile_is_skipped() {
    let settings = fresh_settings("cancelled").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_cancel", "inv_cancel").await;
    let command = command("cus_cancel", "inv_cancel", "cancel@example.fr");
    sqlx::query(
        "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids,
                                kind, trigger, step_id, channel, segment, status, scheduled_for,
                                policy_id, policy_version, topic, command)
         VALUES ($1::uuid, $2, $3, 'cus_cancel', ARRAY['inv_cancel'], 'message', '{}',
                 'first_reminder', 'email', 'standard', 'cancelled', now(), 'default', 1,
                 'relance.reminders', $4)",
    )
    .bind(command["data"]["reminder_id"].as_str().unwrap())
    .bind(command["data"]["idempotency_key"].as_str().unwrap())
    .bind(TENANT)
    .bind(&command)
    .execute(&pool(&settings))
    .await
    .unwrap();
    publish(&settings, &[command]).await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 1, SETTLE).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].skip_reason.as_deref()),
        ("skipped", Some("reminder_cancelled"))
    );
    assert!(
        fake.accepted_counts().is_empty(),
        "nothing reached the provider"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

/// Issue 14, item 3: no address, name or phone in the logs above DEBUG, whether a reminder is
/// sent or skipped because its address is suppressed.
#[tokio::test]
async fn no_personal_data_reaches_the_logs() {
    let settings = fresh_settings("no_pii").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_pii_sent", "inv_pii_sent").await;
    seed_invoice(&settings, "cus_pii_bounced", "inv_pii_bounced").await;
    sqlx::query(
        "INSERT INTO contact_suppressions (tenant, channel, address, reason, source)
         VALUES ($1, 'email', 'bounced.person@example.fr', 'hard_bounce', 'test')",
    )
    .bind(TENANT)
    .execute(&pool(&settings))
    .await
    .unwrap();
    publish(
        &settings,
        &[
            command("cus_pii_sent", "inv_pii_sent", "sent.person@example.fr"),
            command(
                "cus_pii_bounced",
                "inv_pii_bounced",
                "bounced.person@example.fr",
            ),
        ],
    )
    .await;
    let mut sender = spawn_sender(&settings, &postmark_env(&server.uri())).await;
    let rows = settled(&pool(&settings), 2, SETTLE).await;
    let mut outcomes: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|row| (row.status.clone(), row.skip_reason.clone()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("sent".to_string(), None),
            ("skipped".to_string(), Some("contact_bounced".to_string()))
        ]
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
    let logs = sender.logs().join("\n");
    assert!(logs.contains("Reminder skipped by the guard"), "{logs}");
    for personal in [
        "sent.person@",
        "bounced.person@",
        "example.fr",
        "Camille",
        "Durand",
        "+33612345678",
    ] {
        assert!(!logs.contains(personal), "{personal} in the logs:\n{logs}");
    }
}
