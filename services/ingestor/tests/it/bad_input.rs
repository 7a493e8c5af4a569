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
            name: "tenant does not own the invoice",
            value: bytes(&payment(
                "p-tenant",
                "inv_a",
                "cus_a",
                "globex",
                json!({"amount_minor": 100, "currency": "EUR"}),
            )),
            reason: "tenant_mismatch",
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
    // The business-rule cases are recorded as processed too (refused once, never re-applied).
    let refused = cases
        .iter()
        .filter(|case| case.reason.ends_with("_mismatch"))
        .count();
    good_count += cases.len();
    world
        .wait_processed(good_count + refused, Duration::from_secs(60))
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
        "tenant_mismatch",
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
