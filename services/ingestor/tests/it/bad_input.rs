//! Every kind of bad input lands in the dead-letter topic with its reason, and the good event
//! after it is applied.

use std::time::Duration;

use relance_contracts::dead_letter::DeadLetterRecordV1;
use relance_contracts::schema::Schemas;
use serde_json::{json, Value};

use crate::helpers::{TestIngestor, World};
use crate::simulator::envelope;

fn issued(invoice: &str, customer: &str, tenant: &str, currency: &str) -> Value {
    envelope(
        "billing.invoice.issued",
        &format!("iss-{invoice}-{tenant}"),
        tenant,
        customer,
        chrono::Utc::now(),
        json!({
            "invoice_id": invoice, "customer_id": customer, "number": "F-1", "issued_on": "2026-11-01",
            "due_on": "2026-12-01", "total": {"amount_minor": 10_000, "currency": currency}
        }),
    )
}

fn payment(id: &str, invoice: &str, customer: &str, tenant: &str, amount: Value) -> Value {
    envelope(
        "billing.payment.succeeded",
        id,
        tenant,
        customer,
        chrono::Utc::now(),
        json!({
            "payment_id": format!("pay-{id}"), "invoice_id": invoice, "customer_id": customer,
            "amount": amount, "paid_at": "2026-11-05T10:00:00Z"
        }),
    )
}

struct Case {
    name: &'static str,
    value: Vec<u8>,
    reason: &'static str,
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test]
async fn every_kind_of_bad_input_is_dead_lettered_with_its_reason_and_the_next_event_applies() {
    let ingestor = TestIngestor::spawn("bad").await;
    let world: &World = &ingestor.world;
    let payments = world.settings.kafka.topics.payments.clone();

    // An invoice of tenant acme in EUR, for the business-rule cases.
    world
        .publish_raw(
            &world.settings.kafka.topics.invoices,
            b"cus_a",
            &bytes(&issued("inv_a", "cus_a", "acme", "EUR")),
        )
        .await;
    world.wait_processed(1, Duration::from_secs(30)).await;

    let mut unknown_type = payment(
        "p-unknown",
        "inv_a",
        "cus_a",
        "acme",
        json!({"amount_minor": 1, "currency": "EUR"}),
    );
    unknown_type["type"] = json!("billing.payment.teleported");
    let mut missing_field = payment(
        "p-missing",
        "inv_a",
        "cus_a",
        "acme",
        json!({"amount_minor": 1, "currency": "EUR"}),
    );
    missing_field["data"]
        .as_object_mut()
        .unwrap()
        .remove("paid_at");
    let mut future_version = payment(
        "p-v2",
        "inv_a",
        "cus_a",
        "acme",
        json!({"amount_minor": 1, "currency": "EUR"}),
    );
    future_version["schemaversion"] = json!(2);
    // Schema-valid, but no database (nor any text) can hold a NUL: it once stopped the
    // ingestor in a crash loop.
    let mut nul_number = issued("inv_nul", "cus_a", "acme", "EUR");
    nul_number["data"]["number"] = json!("F-NUL\u{0}-1");
    let cases = vec![
        Case {
            name: "a NUL character in a schema-valid invoice number",
            value: bytes(&nul_number),
            reason: "invalid_text",
        },
        Case {
            name: "undecodable bytes",
            value: b"\xff\xfe\x00 not json".to_vec(),
            reason: "invalid_json",
        },
        Case {
            name: "JSON that is not an event",
            value: b"[1, 2, 3]".to_vec(),
            reason: "not_a_cloudevent",
        },
        Case {
            name: "unknown event type",
            value: bytes(&unknown_type),
            reason: "unknown_event_type",
        },
        Case {
            name: "schema violation",
            value: bytes(&missing_field),
            reason: "schema_violation",
        },
        Case {
            name: "unsupported schema version",
            value: bytes(&future_version),
            reason: "unsupported_schema_version",
        },
        Case {
            name: "negative amount",
            value: bytes(&payment(
                "p-neg",
                "inv_a",
                "cus_a",
                "acme",
                json!({"amount_minor": -100, "currency": "EUR"}),
            )),
            reason: "invalid_amount",
        },
        Case {
            name: "overflowing amount",
            value: bytes(&payment(
                "p-big",
                "inv_a",
                "cus_a",
                "acme",
                json!({"amount_minor": 9_007_199_254_740_992_u64, "currency": "EUR"}),
            )),
            reason: "invalid_amount",
        },
        Case {
            name: "currency differs from the invoice's",
            value: bytes(&payment(
                "p-usd",
                "inv_a",
                "cus_a",
                "acme",
                json!({"amount_minor": 100, "currency": "USD"}),
            )),
            reason: "currency_mismatch",
        },
        Case {
            name: "invoice of another customer",
            value: bytes(&payment(
                "p-customer",
                "inv_a",
                "cus_b",
                "acme",
                json!({"amount_minor": 100, "currency": "EUR"}),
            )),
            reason: "customer_mismatch",
        },
    ];

    let mut good_count = 1;
    for (index, case) in cases.iter().enumerate() {
        world.publish_raw(&payments, b"cus_a", &case.value).await;
        let good = payment(
            &format!("good-{index}"),
            "inv_a",
            "cus_a",
            "acme",
            json!({"amount_minor": 10, "currency": "EUR"}),
        );
        world.publish_raw(&payments, b"cus_a", &bytes(&good)).await;
    }
    // Business-rule refusals are not recorded as processed: a replay of their dead letter,
    // once the cause is fixed, applies them.
    good_count += cases.len();
    world
        .wait_processed(good_count, Duration::from_secs(60))
        .await;

    let dead = world
        .read_topic(
            &world.settings.kafka.topics.dlq,
            cases.len(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(dead.len(), cases.len(), "one dead letter per bad record");
    for (case, record) in cases.iter().zip(&dead) {
        assert_eq!(
            record.header("relance_dlq_reason"),
            Some(case.reason.as_bytes()),
            "{}",
            case.name
        );
        assert_eq!(
            record.header("relance_dlq_source_topic"),
            Some(payments.as_bytes()),
            "{}",
            case.name
        );
        assert_eq!(
            record.header("relance_dlq_service"),
            Some(&b"ingestor"[..]),
            "{}",
            case.name
        );
        assert_eq!(
            record.header("x-origin"),
            Some(&b"test"[..]),
            "{}: original headers kept",
            case.name
        );
        assert_eq!(
            record.key.as_deref(),
            Some(&b"cus_a"[..]),
            "{}: original key kept",
            case.name
        );
        let json: Value = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
        Schemas::global()
            .validate_dead_letter(&json)
            .expect("the dead letter meets its schema");
        let body: DeadLetterRecordV1 = serde_json::from_value(json).unwrap();
        assert_eq!(body.reason.as_str(), case.reason, "{}", case.name);
        assert!(
            !body.detail.as_str().is_empty(),
            "{}: a human message",
            case.name
        );
        assert_eq!(body.source.topic, payments, "{}", case.name);
        assert_eq!(
            record.header("relance_dlq_source_offset"),
            Some(body.source.offset.to_string().as_bytes()),
            "{}: header and body agree on the offset",
            case.name
        );
        assert_eq!(
            record.header("relance_dlq_source_partition"),
            Some(body.source.partition.to_string().as_bytes()),
            "{}",
            case.name
        );
        assert_eq!(
            body.original.value_bytes().unwrap().as_deref(),
            Some(case.value.as_slice()),
            "{}: original payload kept",
            case.name
        );
    }

    // Every good payment after a bad record was applied: 10 × 10 cents.
    let invoices = world.invoices().await;
    let (facts, state) = &invoices["inv_a"];
    assert_eq!(facts.payments.len(), cases.len());
    assert_eq!(state.amount_due_minor, 10_000 - 10 * cases.len() as i64);

    let metrics = World::metrics_text(ingestor.ops).await;
    for reason in [
        "invalid_json",
        "not_a_cloudevent",
        "unknown_event_type",
        "schema_violation",
        "unsupported_schema_version",
        "currency_mismatch",
        "customer_mismatch",
        "invalid_text",
    ] {
        assert!(
            metrics.contains(&format!(
                r#"relance_ingest_dead_lettered_total{{reason="{reason}"}} 1"#
            )),
            "{reason}: {metrics}"
        );
    }
    assert!(
        metrics.contains(r#"relance_ingest_dead_lettered_total{reason="invalid_amount"} 2"#),
        "{metrics}"
    );
    ingestor.stop().await;
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn a_dead_letter_too_large_for_the_broker_is_cut_to_fit_and_kept_whole_in_the_database() {
    let ingestor = TestIngestor::spawn("huge_dlq").await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    // 900 KiB of bytes that are not UTF-8: its dead letter (base64 in JSON) would be 1.2 MB.
    let huge: Vec<u8> = (0..900 * 1024)
        .map(|index| 0x80 | (index % 64) as u8)
        .collect();
    world.publish_raw(&invoices, b"cus_huge", &huge).await;
    world
        .publish_raw(
            &invoices,
            b"cus_after",
            &bytes(&issued("inv_after", "cus_after", "acme", "EUR")),
        )
        .await;
    world.wait_processed(1, Duration::from_secs(60)).await;

    let dead = world
        .read_topic(&world.settings.kafka.topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1, "the dead letter landed");
    let record = &dead[0];
    let size = record.payload.as_ref().map_or(0, Vec::len)
        + record.key.as_ref().map_or(0, Vec::len)
        + record
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
    assert!(size <= 900_000, "cut to fit: {size} bytes");
    assert_eq!(
        record.header("relance_dlq_reason"),
        Some(&b"invalid_json"[..])
    );
    assert_eq!(record.header("relance_dlq_truncated"), Some(&b"true"[..]));
    assert_eq!(
        record.header("relance_dlq_original_bytes"),
        Some(huge.len().to_string().as_bytes())
    );
    assert_eq!(
        record.header("relance_dlq_original_sha256"),
        Some(sha256(&huge).as_bytes())
    );
    let json: Value = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
    Schemas::global()
        .validate_dead_letter(&json)
        .expect("still a valid dead letter");
    assert!(
        json["detail"].as_str().unwrap().contains("was cut to fit"),
        "{}",
        json["detail"]
    );

    let (payload, sha, truncated): (Vec<u8>, String, bool) =
        sqlx::query_as("SELECT original_payload, original_sha256, truncated FROM dead_letters")
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(
        (payload == huge, sha, truncated),
        (true, sha256(&huge), true)
    );
    let stuck: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL OR failed_at IS NOT NULL",
    )
    .fetch_one(&world.pool)
    .await
    .unwrap();
    assert_eq!(stuck, 0, "nothing left to retry");
    ingestor.stop().await;
}

// Two worker threads: this test once hung a whole CI run past nextest's 180 s limit with no
// timeout firing, so something blocked the only thread of a current-thread runtime. With
// workers, the waits below time out and name the step instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_refuses_for_good_is_set_aside_not_retried_forever() {
    let plain = crate::helpers::fresh_settings("refused_dlq").await;
    let publisher = World::on(plain.clone());
    let mut settings = plain;
    // The ingestor's producer takes nothing above 100 kB; its dead letters may be 900 kB: they
    // are refused for good.
    settings
        .kafka
        .librdkafka
        .insert("message.max.bytes".into(), "100000".into());
    let ingestor = TestIngestor::spawn_on(settings).await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    let big: Vec<u8> = vec![b'x'; 300 * 1024];
    let published = async {
        publisher.publish_raw(&invoices, b"cus_big", &big).await;
        publisher
            .publish_raw(
                &invoices,
                b"cus_after",
                &bytes(&issued("inv_after", "cus_after", "acme", "EUR")),
            )
            .await;
    };
    tokio::time::timeout(Duration::from_secs(60), published)
        .await
        .expect("the two records published within a minute");
    world.wait_processed(1, Duration::from_secs(60)).await;

    let failed = relance_testkit::wait_for(
        Duration::from_secs(30),
        "the dead letter to be set aside",
        || async {
            sqlx::query_as::<_, (i32, Option<String>)>(
                "SELECT attempts, last_error FROM outbox WHERE failed_at IS NOT NULL",
            )
            .fetch_optional(&world.pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert!(
        failed
            .1
            .as_deref()
            .is_some_and(|error| error.contains("size")),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM outbox WHERE failed_at IS NOT NULL")
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 1, "never retried");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the record is not lost: it is in dead_letters");
    let metrics = World::metrics_text(ingestor.ops).await;
    assert!(
        metrics.contains(&format!(
            "relance_outbox_failed_total{{topic=\"{}\"}} 1",
            world.settings.kafka.topics.dlq
        )),
        "{metrics}"
    );
    ingestor.stop().await;
}

#[tokio::test]
async fn the_same_id_with_other_data_is_dead_lettered_with_both_digests_and_a_redelivery_is_not() {
    let ingestor = TestIngestor::spawn("conflicting_id").await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    let payments = world.settings.kafka.topics.payments.clone();
    world
        .publish_raw(
            &invoices,
            b"cus_d",
            &bytes(&issued("inv_d", "cus_d", "acme", "EUR")),
        )
        .await;
    let first = payment(
        "p-same",
        "inv_d",
        "cus_d",
        "acme",
        json!({"amount_minor": 1_000, "currency": "EUR"}),
    );
    let mut layout = first.clone();
    // The same event again, laid out differently: a redelivery.
    layout["data"] =
        serde_json::from_str(&serde_json::to_string_pretty(&first["data"]).unwrap()).unwrap();
    let other = payment(
        "p-same",
        "inv_d",
        "cus_d",
        "acme",
        json!({"amount_minor": 9_000, "currency": "EUR"}),
    );
    for event in [&first, &layout, &other] {
        world.publish_raw(&payments, b"cus_d", &bytes(event)).await;
    }
    let dead = world
        .read_topic(&world.settings.kafka.topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1, "only the conflicting one");
    assert_eq!(
        dead[0].header("relance_dlq_reason"),
        Some(&b"conflicting_duplicate"[..])
    );
    let body: Value = serde_json::from_slice(dead[0].payload.as_deref().unwrap()).unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(detail.matches("SHA-256").count(), 2, "{detail}");
    // The invoice's issue comes on another topic: it may be applied after the payments (seen
    // once in a full `make test`, the invoice still awaiting its issue with nothing due).
    world.wait_processed(2, Duration::from_secs(30)).await;
    let invoices = world.invoices().await;
    assert_eq!(
        invoices["inv_d"].1.amount_due_minor,
        10_000 - 1_000,
        "the first payment only"
    );
    ingestor.stop().await;
}

#[tokio::test]
async fn a_refused_event_replayed_once_its_cause_is_fixed_is_applied() {
    let ingestor = TestIngestor::spawn("replay_fixed").await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    let payments = world.settings.kafka.topics.payments.clone();
    // A payment names the wrong customer and arrives first: the invoice is taken as theirs.
    world
        .publish_raw(
            &payments,
            b"cus_wrong",
            &bytes(&payment(
                "p-wrong",
                "inv_q",
                "cus_wrong",
                "acme",
                json!({"amount_minor": 100, "currency": "EUR"}),
            )),
        )
        .await;
    world.wait_processed(1, Duration::from_secs(30)).await;
    // The invoice itself is then refused: it belongs to another customer.
    let issued_q = bytes(&issued("inv_q", "cus_q", "acme", "EUR"));
    world.publish_raw(&invoices, b"cus_q", &issued_q).await;
    let dead = world
        .read_topic(&world.settings.kafka.topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        dead[0].header("relance_dlq_reason"),
        Some(&b"customer_mismatch"[..])
    );
    // A person removes the invoice the wrong payment created, then replays the dead letter
    // (the same record, as `relancectl dlq replay` publishes it): it is applied, not taken
    // for an event already processed.
    sqlx::query("DELETE FROM invoices WHERE invoice_id = 'inv_q'")
        .execute(&world.pool)
        .await
        .unwrap();
    world.publish_raw(&invoices, b"cus_q", &issued_q).await;
    relance_testkit::wait_for(
        Duration::from_secs(30),
        "the replayed invoice to apply",
        || async {
            let invoices = world.invoices().await;
            invoices
                .get("inv_q")
                .filter(|(facts, state)| {
                    facts.customer_id == "cus_q" && state.amount_due_minor == 10_000
                })
                .map(|_| ())
        },
    )
    .await;
    ingestor.stop().await;
}

#[tokio::test]
async fn a_payment_in_another_currency_before_its_invoice_is_kept_counted_and_visible() {
    let ingestor = TestIngestor::spawn("conflicting_amount").await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    let payments = world.settings.kafka.topics.payments.clone();
    world
        .publish_raw(
            &payments,
            b"cus_c",
            &bytes(&payment(
                "p-usd-c",
                "inv_c",
                "cus_c",
                "acme",
                json!({"amount_minor": 5_000, "currency": "USD"}),
            )),
        )
        .await;
    // Payments and invoices are two topics, read side by side: the payment first, for sure.
    world.wait_processed(1, Duration::from_secs(30)).await;
    world
        .publish_raw(
            &invoices,
            b"cus_c",
            &bytes(&issued("inv_c", "cus_c", "acme", "EUR")),
        )
        .await;
    world.wait_processed(2, Duration::from_secs(30)).await;
    let (due, conflicting): (i64, i32) = sqlx::query_as(
        "SELECT amount_due_minor, conflicting_amounts FROM invoices WHERE invoice_id = 'inv_c'",
    )
    .fetch_one(&world.pool)
    .await
    .unwrap();
    assert_eq!(
        (due, conflicting),
        (10_000, 1),
        "kept, not counted, and visible"
    );
    let metrics = World::metrics_text(ingestor.ops).await;
    assert!(
        metrics.contains(
            "relance_ingest_conflicting_amounts_total{event_type=\"billing.invoice.issued\"} 1"
        ),
        "{metrics}"
    );
    ingestor.stop().await;
}

/// Issue 14, item 9: an invoice whose payment page is not https, or not on a host its tenant
/// takes payments on, would send customers anywhere from a message they trust.
#[tokio::test]
async fn a_payment_url_off_the_tenants_hosts_or_not_https_is_dead_lettered() {
    let mut settings = crate::helpers::fresh_settings("payment_hosts").await;
    settings.sender.tenants.insert(
        "acme".into(),
        relance_config::TenantIdentity {
            payment_hosts: Some(vec!["pay.acme.example".into(), "*.stripe.example".into()]),
            ..Default::default()
        },
    );
    let ingestor = TestIngestor::spawn_on(settings).await;
    let world: &World = &ingestor.world;
    let invoices = world.settings.kafka.topics.invoices.clone();
    let with_url = |invoice: &str, tenant: &str, url: &str| {
        let mut event = issued(invoice, &format!("cus_p_{tenant}"), tenant, "EUR");
        event["data"]["payment_url"] = json!(url);
        bytes(&event)
    };
    let cases = [
        ("inv_http", "acme", "http://pay.acme.example/i/1", false),
        ("inv_evil", "acme", "https://evil.example/i/1", false),
        (
            "inv_userinfo",
            "acme",
            "https://pay.acme.example@evil.example/",
            false,
        ),
        (
            "inv_lookalike",
            "acme",
            "https://pay.acme.example.evil.example/",
            false,
        ),
        ("inv_ok", "acme", "https://pay.acme.example/i/1", true),
        (
            "inv_stripe",
            "acme",
            "https://checkout.stripe.example/c/1",
            true,
        ),
        // A tenant with no list takes any https host, never http.
        (
            "inv_other_ok",
            "globex",
            "https://anything.example/pay",
            true,
        ),
        (
            "inv_other_http",
            "globex",
            "http://anything.example/pay",
            false,
        ),
    ];
    for (invoice, tenant, url, _) in &cases {
        world
            .publish_raw(&invoices, b"cus_p", &with_url(invoice, tenant, url))
            .await;
    }
    let refused: Vec<&str> = cases
        .iter()
        .filter(|case| !case.3)
        .map(|case| case.0)
        .collect();
    let dead = world
        .read_topic(
            &world.settings.kafka.topics.dlq,
            refused.len(),
            Duration::from_secs(30),
        )
        .await;
    for record in &dead {
        assert_eq!(
            record.header("relance_dlq_reason"),
            Some(&b"payment_url_refused"[..])
        );
    }
    relance_testkit::wait_for(
        Duration::from_secs(30),
        "the allowed invoices to apply",
        || async {
            let applied = world.invoices().await;
            cases
                .iter()
                .filter(|case| case.3)
                .all(|case| applied.contains_key(case.0))
                .then_some(())
        },
    )
    .await;
    let applied = world.invoices().await;
    for invoice in refused {
        assert!(!applied.contains_key(invoice), "{invoice} must not apply");
    }
    let metrics = World::metrics_text(ingestor.ops).await;
    assert!(
        metrics.contains(r#"relance_ingest_dead_lettered_total{reason="payment_url_refused"} 5"#),
        "{metrics}"
    );
    ingestor.stop().await;
}

/// Found by `make chaos` (issue 13): when the original and a copy with other data arrive in one
/// batch, the copy must be dead-lettered `conflicting_duplicate`, and a harmless redelivery in
/// the same batch must not be.
#[tokio::test]
async fn a_conflicting_copy_in_the_same_batch_as_its_original_is_dead_lettered() {
    let settings = crate::helpers::fresh_settings("conflicting_batch").await;
    let world = World::on(settings.clone());
    let invoices = settings.kafka.topics.invoices.clone();
    let payments = settings.kafka.topics.payments.clone();
    world
        .publish_raw(
            &invoices,
            b"cus_b",
            &bytes(&issued("inv_b", "cus_b", "acme", "EUR")),
        )
        .await;
    let first = payment(
        "p-batch",
        "inv_b",
        "cus_b",
        "acme",
        json!({"amount_minor": 1_000, "currency": "EUR"}),
    );
    let mut layout = first.clone();
    layout["data"] =
        serde_json::from_str(&serde_json::to_string_pretty(&first["data"]).unwrap()).unwrap();
    let other = payment(
        "p-batch",
        "inv_b",
        "cus_b",
        "acme",
        json!({"amount_minor": 9_000, "currency": "EUR"}),
    );
    // Published before the ingestor starts, so that it reads them in one batch.
    for event in [&first, &layout, &other] {
        world.publish_raw(&payments, b"cus_b", &bytes(event)).await;
    }
    let ingestor = TestIngestor::spawn_on(settings).await;
    let dead = world
        .read_topic(&world.settings.kafka.topics.dlq, 1, Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header("relance_dlq_reason"),
        Some(&b"conflicting_duplicate"[..])
    );
    let body: Value = serde_json::from_slice(dead[0].payload.as_deref().unwrap()).unwrap();
    assert!(
        body.to_string().contains("9000") || body.to_string().contains("9_000"),
        "the dead letter is the 9,000 copy: {body}"
    );
    // Nothing else is dead-lettered: the redelivery laid out differently is a duplicate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    assert_eq!(world.invoices().await["inv_b"].1.amount_due_minor, 9_000);
    ingestor.stop().await;
}
