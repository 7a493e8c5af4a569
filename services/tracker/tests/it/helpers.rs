//! A database, topics and a tracker process per test; a sent reminder to act on; tokens signed
//! with the development keys, or forged.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use relance_config::{ServiceName, Settings};
use relance_links::{LinkAction, LinkClaims, LinkSigner};
use relance_storage::deliveries::{self, NewDelivery};
use relance_testkit::{
    create_unique_database, create_unique_topics, reminder_command, seed_open_invoice, service_env,
    settings_overrides, test_settings, unique_name, ServiceProcess,
};
use sqlx::PgPool;
use uuid::Uuid;

pub const PARTITIONS: i32 = 4;
pub const TENANT: &str = "acme";
pub const AMOUNT: i64 = 73_456;

pub async fn fresh_settings(label: &str) -> Settings {
    let mut settings = create_unique_database(&test_settings(ServiceName::Tracker)).await;
    settings.kafka.topics = create_unique_topics(&settings, label, PARTITIONS).await;
    settings.tracker.group_id = unique_name(label);
    settings
}

pub fn pool(settings: &Settings) -> PgPool {
    relance_storage::lazy_pool(&settings.database, "tracker-test")
}

/// A reminder about an open invoice, sent an hour ago by email.
pub struct Sent {
    pub customer: String,
    pub invoice: String,
    pub reminder_id: Uuid,
    pub delivery_id: Uuid,
}

pub async fn sent_reminder(settings: &Settings, customer: &str, invoice: &str) -> Sent {
    seed_open_invoice(settings, TENANT, customer, invoice, AMOUNT).await;
    let command = reminder_command(
        TENANT,
        customer,
        invoice,
        &format!("{customer}@example.fr"),
        AMOUNT,
    );
    let reminder_id = Uuid::parse_str(command["data"]["reminder_id"].as_str().unwrap()).unwrap();
    let delivery_id = Uuid::new_v4();
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let pool = pool(settings);
    let mut transaction = pool.begin().await.unwrap();
    deliveries::insert_new(
        &mut transaction,
        &[NewDelivery {
            delivery_id,
            idempotency_key: command["data"]["idempotency_key"].as_str().unwrap().to_string(),
            reminder_id,
            tenant: TENANT.into(),
            customer_id: customer.into(),
            invoice_ids: vec![invoice.into()],
            channel: "email".into(),
            segment: "standard".into(),
            step_id: "first_reminder".into(),
            template: "first_reminder".into(),
            variant: None,
            command: command.clone(),
            source: serde_json::json!({"topic": "relance.reminders", "partition": 0, "offset": 0, "timestamp_ms": null, "key": null, "payload": null, "headers": []}),
            received_at: hour_ago,
        }],
    )
    .await
    .unwrap();
    // As the sender records an accepted message.
    sqlx::query(
        "UPDATE deliveries SET status = 'sent', next_attempt_at = NULL, sent_at = $2,
                               finished_at = $2, provider = 'postmark', provider_message_id = $3,
                               recipient = $4
         WHERE delivery_id = $1",
    )
    .bind(delivery_id)
    .bind(hour_ago)
    .bind(format!("pm-{delivery_id}"))
    .bind(format!("{customer}@example.fr"))
    .execute(&mut *transaction)
    .await
    .unwrap();
    transaction.commit().await.unwrap();
    Sent {
        customer: customer.into(),
        invoice: invoice.into(),
        reminder_id,
        delivery_id,
    }
}

/// The tracker, and the base URL of its public side.
pub async fn spawn_tracker(
    settings: &Settings,
    extra: &[(&'static str, String)],
) -> (ServiceProcess, String) {
    let mut overrides = settings_overrides(settings);
    overrides.push((
        "RELANCE__TRACKER__GROUP_ID",
        settings.tracker.group_id.clone(),
    ));
    // These tests read what the tracker published from the outbox: keep published records
    // (the default deletes them as they are published).
    overrides.push(("RELANCE__OUTBOX__RETENTION_HOURS", "24".into()));
    overrides.extend(extra.iter().cloned());
    let mut process = ServiceProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_tracker")),
        service_env(&overrides),
    )
    .await;
    let line = process
        .wait_for_log(Duration::from_secs(30), |line| {
            line.contains("Serving the public pages")
        })
        .await
        .expect("the public side starts");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = format!("http://{}", json["address"].as_str().unwrap());
    (process, url)
}

pub fn signer() -> LinkSigner {
    LinkSigner::from_text(
        &std::fs::read_to_string(relance_testkit::config_dir().join("dev-link-keys")).unwrap(),
    )
    .unwrap()
}

pub fn claims(sent: &Sent, action: LinkAction) -> LinkClaims {
    LinkClaims {
        t: TENANT.into(),
        i: sent.invoice.clone(),
        c: sent.customer.clone(),
        r: sent.reminder_id,
        a: action,
        exp: (Utc::now() + chrono::Duration::days(30)).timestamp(),
        u: None,
    }
}

/// `{base}/l/{action}/{token}` for `claims`, signed with the development key.
pub fn url(base: &str, claims: &LinkClaims) -> String {
    signer().url(base, claims)
}

/// A client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

pub async fn invoice_state(pool: &PgPool, invoice: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, pause_reason FROM invoices WHERE invoice_id = $1")
        .bind(invoice)
        .fetch_one(pool)
        .await
        .unwrap()
}
