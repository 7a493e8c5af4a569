//! Provider webhooks against the tracker process: authenticated, idempotent, acted on.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;

use crate::helpers::{client, count, fresh_settings, pool, sent_reminder, spawn_tracker};

const POSTMARK_USER: &str = "postmark-hooks";
const POSTMARK_PASSWORD: &str = "a-long-random-webhook-password";

fn postmark_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME",
            POSTMARK_USER.into(),
        ),
        (
            "RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD",
            POSTMARK_PASSWORD.into(),
        ),
    ]
}

#[tokio::test]
async fn postmark_webhooks_need_their_credentials_and_count_once() {
    let settings = fresh_settings("postmark-hooks").await;
    let pool = pool(&settings);
    let sent = sent_reminder(&settings, "cus_pm", "inv_pm").await;
    let (mut tracker, base) = spawn_tracker(&settings, &postmark_env()).await;
    let http = client();
    let delivery = json!({
        "RecordType": "Delivery", "MessageStream": "outbound", "ServerID": 23,
        "MessageID": format!("pm-{}", sent.delivery_id), "Recipient": "cus_pm@example.fr",
        "Tag": "dunning-default-first_reminder", "DeliveredAt": "2026-11-23T14:15:05.5432100Z",
        "Details": "smtp;250 2.0.0 OK", "Metadata": {"relance_send": sent.delivery_id.to_string()}
    });
    let hook = format!("{base}/webhooks/postmark");
    let malformed = http
        .post(&hook)
        .basic_auth(POSTMARK_USER, Some(POSTMARK_PASSWORD))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        malformed.status(),
        400,
        "a body that is not Postmark's JSON is refused, and nothing breaks"
    );
    let unauthorised = http.post(&hook).json(&delivery).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let wrong = http
        .post(&hook)
        .basic_auth(POSTMARK_USER, Some("guess"))
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for _ in 0..2 {
        let accepted = http
            .post(&hook)
            .basic_auth(POSTMARK_USER, Some(POSTMARK_PASSWORD))
            .json(&delivery)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200);
    }
    let delivered: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT delivered_at FROM deliveries WHERE delivery_id = $1")
            .bind(sent.delivery_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(delivered.is_some());

    let bounce = json!({
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 3719297970i64, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "dunning-default-first_reminder", "MessageID": format!("pm-{}", sent.delivery_id),
        "Metadata": {"relance_send": sent.delivery_id.to_string()}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 user unknown", "Email": "CUS_PM@example.fr", "From": "billing@example.com",
        "BouncedAt": "2026-11-23T14:15:07.0000000Z", "DumpAvailable": true, "Inactive": true, "CanActivate": true,
        "Subject": "Facture F-inv_pm"
    });
    let response = http
        .post(&hook)
        .basic_auth(POSTMARK_USER, Some(POSTMARK_PASSWORD))
        .json(&bounce)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let suppression: (String, String) =
        sqlx::query_as("SELECT address, reason FROM contact_suppressions WHERE tenant = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        suppression,
        ("cus_pm@example.fr".into(), "hard_bounce".into())
    );
    let tasks = count(
        &pool,
        &format!(
            "SELECT count(*) FROM outbox WHERE topic = '{}'",
            settings.kafka.topics.tasks
        ),
    )
    .await;
    assert_eq!(
        tasks, 1,
        "a person is asked to reach the customer another way"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM webhook_events").await,
        2,
        "two distinct events"
    );
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(metrics.contains("relance_webhook_events_total{kind=\"delivered\",outcome=\"duplicate\",provider=\"postmark\"} 1"), "{metrics}");
    assert!(
        metrics.contains("relance_reminders_bounced_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relance_webhook_events_total{kind=\"any\",outcome=\"malformed\",provider=\"postmark\"} 1"),
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn sendgrid_webhooks_are_accepted_only_with_a_valid_signature() {
    let settings = fresh_settings("sendgrid-hooks").await;
    let pool = pool(&settings);
    let sent = sent_reminder(&settings, "cus_sg", "inv_sg").await;
    let signing = SigningKey::from_bytes(&[42u8; 32].into()).unwrap();
    let public = signing.verifying_key().to_public_key_der().unwrap();
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[(
            "RELANCE__TRACKER__SENDGRID_WEBHOOK_PUBLIC_KEY",
            STANDARD.encode(public.as_bytes()),
        )],
    )
    .await;
    let http = client();
    let body = serde_json::to_string(&json!([
        {"email": "cus_sg@example.fr", "timestamp": 1_795_000_000i64, "event": "delivered", "sg_event_id": "ZGVsaXZlcmVkLTAt",
         "sg_message_id": "R1.filter0001", "relance_send": sent.delivery_id.to_string()},
        {"email": "cus_sg@example.fr", "timestamp": 1_795_000_100i64, "event": "open", "sg_machine_open": true, "useragent": "Mozilla/5.0",
         "sg_event_id": "b3Blbi0", "sg_message_id": "R1.filter0001", "relance_send": sent.delivery_id.to_string()},
        {"email": "cus_sg@example.fr", "timestamp": 1_795_000_200i64, "event": "spamreport", "sg_event_id": "c3BhbS0",
         "sg_message_id": "R1.filter0001", "relance_send": sent.delivery_id.to_string()}
    ]))
    .unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    let timestamp = now.as_str();
    let sign_at = |timestamp: &str, body: &str| {
        let signature: Signature = signing.sign(&[timestamp.as_bytes(), body.as_bytes()].concat());
        STANDARD.encode(signature.to_der().as_bytes())
    };
    let sign = |body: &str| sign_at(timestamp, body);
    let hook = format!("{base}/webhooks/sendgrid");
    let post_at = |timestamp: String, body: String, signature: String| {
        http.post(&hook)
            .header("content-type", "application/json")
            .header("X-Twilio-Email-Event-Webhook-Signature", signature)
            .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
            .body(body)
            .send()
    };
    let post = |body: String, signature: String| post_at(timestamp.to_string(), body, signature);
    // Correctly signed, but three days old: a captured request replayed.
    let old = (chrono::Utc::now().timestamp() - 3 * 86_400).to_string();
    assert_eq!(
        post_at(old.clone(), body.clone(), sign_at(&old, &body))
            .await
            .unwrap()
            .status(),
        403,
        "a stale timestamp"
    );
    assert_eq!(
        post_at("soon".into(), body.clone(), sign_at("soon", &body))
            .await
            .unwrap()
            .status(),
        403,
        "a timestamp that is not a number"
    );
    let changed = body.replace("spamreport", "delivered");
    assert_eq!(
        post(changed, sign(&body)).await.unwrap().status(),
        403,
        "a changed body"
    );
    assert_eq!(
        post(body.clone(), "MEUCIQ".into()).await.unwrap().status(),
        403,
        "a bad signature"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM webhook_events").await, 0);
    assert_eq!(post(body.clone(), sign(&body)).await.unwrap().status(), 200);
    assert_eq!(
        post(body.clone(), sign(&body)).await.unwrap().status(),
        200,
        "redelivered"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM webhook_events").await, 3);
    let open: (String, Option<String>) = sqlx::query_as(
        "SELECT classification, machine_reason FROM interactions WHERE kind = 'open'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        open,
        ("machine".into(), Some("provider_flag".into())),
        "SendGrid's machine-open flag is honoured"
    );
    let reason: String = sqlx::query_scalar("SELECT reason FROM contact_suppressions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reason, "complaint");
    tracker
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
