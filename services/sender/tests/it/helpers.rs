//! A database, topics and a sender process per test; reminder commands built from the
//! contract's example; a fake Postmark that remembers what it accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relance_config::{ServiceName, Settings};
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_testkit::{
    create_unique_database, create_unique_topics, service_env, settings_overrides, test_settings,
    unique_name, wait_for, ServiceProcess,
};
use serde_json::{json, Value};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const PARTITIONS: i32 = 4;
pub const TENANT: &str = "acme";

pub async fn fresh_settings(label: &str) -> Settings {
    let mut settings = create_unique_database(&test_settings(ServiceName::Sender)).await;
    settings.kafka.topics = create_unique_topics(&settings, label, PARTITIONS).await;
    settings.sender.group_id = unique_name(label);
    settings
}

pub fn pool(settings: &Settings) -> PgPool {
    relance_storage::lazy_pool(&settings.database, "sender-test")
}

/// An open invoice of 734.56 € due on 2 December 2026, and its customer.
pub async fn seed_invoice(settings: &Settings, customer: &str, invoice: &str) {
    relance_testkit::seed_open_invoice(settings, TENANT, customer, invoice, 73_456).await;
}

/// A `relance.reminder.send` command for `invoice` of `customer`, to `email`.
pub fn command(customer: &str, invoice: &str, email: &str) -> Value {
    relance_testkit::reminder_command(TENANT, customer, invoice, email, 73_456)
}

pub async fn publish(settings: &Settings, commands: &[Value]) {
    let producer = EventProducer::new(&settings.kafka, "sender-test").unwrap();
    let records: Vec<OutgoingRecord> = commands
        .iter()
        .map(|command| OutgoingRecord {
            topic: settings.kafka.topics.reminders.clone(),
            key: Some(
                command["partitionkey"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
            ),
            payload: serde_json::to_vec(command).unwrap(),
            headers: vec![],
        })
        .collect();
    for result in producer.send_all(&records).await {
        result.expect("published");
    }
}

/// The sender, on `settings`, with `extra` configuration.
pub async fn spawn_sender(settings: &Settings, extra: &[(&'static str, String)]) -> ServiceProcess {
    let mut overrides = settings_overrides(settings);
    // These tests count what the sender published (tasks, dead letters) in the outbox: keep
    // published records (the default deletes them as they are published).
    overrides.push(("RELANCE__OUTBOX__RETENTION_HOURS", "24".into()));
    overrides.extend(extra.iter().cloned());
    ServiceProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_sender")),
        service_env(&overrides),
    )
    .await
}

/// The sender, on `settings`, with `extra` configuration whose keys are built at run time.
pub async fn spawn_sender_with(settings: &Settings, extra: &[(String, String)]) -> ServiceProcess {
    let mut overrides: Vec<(&str, String)> = settings_overrides(settings);
    overrides.push(("RELANCE__OUTBOX__RETENTION_HOURS", "24".into()));
    overrides.extend(
        extra
            .iter()
            .map(|(key, value)| (key.as_str(), value.clone())),
    );
    ServiceProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_sender")),
        service_env(&overrides),
    )
    .await
}

/// Configuration sending email through Postmark at `uri`.
pub fn postmark_env(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "RELANCE__SENDER__PROVIDERS__POSTMARK__KIND",
            "postmark".into(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__POSTMARK__BASE_URL",
            uri.to_string(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN",
            "test-server-token".into(),
        ),
        (
            "RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS",
            "1000".into(),
        ),
        (
            "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER",
            "postmark".into(),
        ),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Row {
    pub idempotency_key: String,
    pub status: String,
    pub attempts: i32,
    pub skip_reason: Option<String>,
    pub error_code: Option<String>,
    pub provider_message_id: Option<String>,
    pub subject: Option<String>,
    pub body_sha256: Option<String>,
}

pub async fn deliveries(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT idempotency_key, status, attempts, skip_reason, error_code, provider_message_id, subject, body_sha256
         FROM deliveries ORDER BY idempotency_key",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// Waits until `count` deliveries exist and none waits for an attempt.
pub async fn settled(pool: &PgPool, count: usize, timeout: Duration) -> Vec<Row> {
    wait_for(
        timeout,
        &format!("{count} deliveries to settle"),
        || async {
            let rows = deliveries(pool).await;
            (rows.len() == count
                && rows
                    .iter()
                    .all(|row| !matches!(row.status.as_str(), "pending" | "in_flight")))
            .then_some(rows)
        },
    )
    .await
}

/// A fake Postmark: answers `/email`, `/email/batch` and the outbound message search as the
/// documentation describes, remembers every message it accepted (by our send id), and fails
/// as the test asks.
#[derive(Clone, Default)]
pub struct FakePostmark {
    /// Send ids of accepted messages, in order (a send id twice is a duplicate message).
    pub accepted: Arc<Mutex<Vec<String>>>,
    /// Messages received per request, in order.
    pub requests: Arc<Mutex<Vec<usize>>>,
    /// Answer the first this-many requests with 500.
    pub fail_first: Arc<Mutex<usize>>,
    /// Recipients refused with 422 / ErrorCode 300.
    pub refused_recipients: Vec<String>,
    pub delay: Duration,
    /// When each request arrived and how many messages it carried.
    pub arrivals: Arc<Mutex<Vec<(Instant, usize)>>>,
    /// An outage from the first request on: every request is answered 500 for this long.
    pub outage: Option<Duration>,
    /// When the outage ends (set by the first request).
    pub down_until: Arc<Mutex<Option<Instant>>>,
    /// The outbound message search answers 500.
    pub search_down: bool,
}

impl FakePostmark {
    fn answer_one(&self, message: &Value) -> Value {
        let to = message["To"].as_str().unwrap_or_default();
        if self
            .refused_recipients
            .iter()
            .any(|refused| to.contains(refused.as_str()))
        {
            return json!({"ErrorCode": 300, "Message": format!("Invalid 'To' address: '{to}'.")});
        }
        let send_id = message["Metadata"]["relance_send"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.accepted.lock().unwrap().push(send_id.clone());
        json!({"To": to, "SubmittedAt": "2026-11-23T09:15:02.1234567-05:00", "MessageID": format!("pm-{send_id}"), "ErrorCode": 0, "Message": "OK"})
    }

    fn fail(&self, messages: usize) -> bool {
        self.arrivals
            .lock()
            .unwrap()
            .push((Instant::now(), messages));
        if let Some(outage) = self.outage {
            let mut until = self.down_until.lock().unwrap();
            let until = *until.get_or_insert_with(|| Instant::now() + outage);
            if Instant::now() < until {
                return true;
            }
        }
        let mut remaining = self.fail_first.lock().unwrap();
        if *remaining > 0 {
            *remaining -= 1;
            true
        } else {
            false
        }
    }

    pub async fn start(self) -> MockServer {
        let server = MockServer::start().await;
        let single = self.clone();
        Mock::given(method("POST"))
            .and(path("/email"))
            .respond_with(move |request: &Request| {
                single.requests.lock().unwrap().push(1);
                if single.fail(1) {
                    return ResponseTemplate::new(500).set_body_json(
                        json!({"ErrorCode": 0, "Message": "Internal server error"}),
                    );
                }
                let message: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let answer = single.answer_one(&message);
                let status = if answer["ErrorCode"] == json!(0) {
                    200
                } else {
                    422
                };
                ResponseTemplate::new(status)
                    .set_body_json(answer)
                    .set_delay(single.delay)
            })
            .mount(&server)
            .await;
        let batch = self.clone();
        Mock::given(method("POST"))
            .and(path("/email/batch"))
            .respond_with(move |request: &Request| {
                let messages: Vec<Value> =
                    serde_json::from_slice(&request.body).unwrap_or_default();
                batch.requests.lock().unwrap().push(messages.len());
                if batch.fail(messages.len()) {
                    return ResponseTemplate::new(500).set_body_json(
                        json!({"ErrorCode": 0, "Message": "Internal server error"}),
                    );
                }
                let answers: Vec<Value> = messages
                    .iter()
                    .map(|message| batch.answer_one(message))
                    .collect();
                ResponseTemplate::new(200)
                    .set_body_json(answers)
                    .set_delay(batch.delay)
            })
            .mount(&server)
            .await;
        let search = self.clone();
        Mock::given(method("GET"))
            .and(path("/messages/outbound"))
            .respond_with(move |request: &Request| {
                if search.search_down {
                    return ResponseTemplate::new(503)
                        .set_body_json(json!({"ErrorCode": 0, "Message": "Service unavailable"}));
                }
                let wanted = request
                    .url
                    .query_pairs()
                    .find(|(key, _)| key == "metadata_relance_send")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                let found = search.accepted.lock().unwrap().contains(&wanted);
                let messages = if found {
                    vec![json!({"MessageID": format!("pm-{wanted}")})]
                } else {
                    vec![]
                };
                ResponseTemplate::new(200)
                    .set_body_json(json!({"TotalCount": messages.len(), "Messages": messages}))
            })
            .mount(&server)
            .await;
        server
    }

    /// How many times each send id was accepted.
    pub fn accepted_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for send_id in self.accepted.lock().unwrap().iter() {
            *counts.entry(send_id.clone()).or_default() += 1;
        }
        counts
    }
}

/// A fake SendGrid v3: `POST /v3/mail/send` answers 202 with `X-Message-Id` after `delay`,
/// remembers every accepted send id (from `custom_args`) and when each request arrived; it
/// cannot be searched, like the real one.
#[derive(Clone, Default)]
pub struct FakeSendGrid {
    pub accepted: Arc<Mutex<Vec<String>>>,
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
    /// Answer the first this-many requests with 429, come back in ten minutes.
    pub fail_first: Arc<Mutex<usize>>,
    pub delay: Duration,
}

impl FakeSendGrid {
    pub async fn start(self) -> MockServer {
        let server = MockServer::start().await;
        let fake = self.clone();
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .respond_with(move |request: &Request| {
                fake.arrivals.lock().unwrap().push(Instant::now());
                {
                    let mut remaining = fake.fail_first.lock().unwrap();
                    if *remaining > 0 {
                        *remaining -= 1;
                        return ResponseTemplate::new(429)
                            .insert_header("Retry-After", "600")
                            .set_body_json(json!({"errors": [{"message": "too many requests", "field": null}]}));
                    }
                }
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let send_id = body["personalizations"][0]["custom_args"]["relance_send"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                fake.accepted.lock().unwrap().push(send_id.clone());
                ResponseTemplate::new(202)
                    .insert_header("X-Message-Id", format!("sg-{send_id}").as_str())
                    .set_delay(fake.delay)
            })
            .mount(&server)
            .await;
        server
    }

    pub fn accepted_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for send_id in self.accepted.lock().unwrap().iter() {
            *counts.entry(send_id.clone()).or_default() += 1;
        }
        counts
    }
}

/// Configuration of a SendGrid provider named `name` at `uri`.
pub fn sendgrid_env(name: &str, uri: &str, timeout_ms: u64) -> Vec<(String, String)> {
    let key = |field: &str| {
        format!(
            "RELANCE__SENDER__PROVIDERS__{}__{field}",
            name.to_uppercase()
        )
    };
    vec![
        (key("KIND"), "sendgrid".into()),
        (key("BASE_URL"), uri.to_string()),
        (key("API_KEY"), "SG.test-key".into()),
        (key("TIMEOUT_MS"), timeout_ms.to_string()),
    ]
}

/// A `billing.payment.succeeded` record paying `invoice` in full.
pub fn payment_record(
    settings: &Settings,
    invoice: &str,
    customer: &str,
) -> relance_kafka::ConsumedRecord {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = json!({
        "specversion": "1.0", "id": format!("pay-{invoice}"), "source": "/billing/acme", "type": "billing.payment.succeeded",
        "time": now, "tenant": TENANT, "schemaversion": 1, "partitionkey": customer,
        "data": {"payment_id": format!("pay_{invoice}"), "invoice_id": invoice, "customer_id": customer,
                 "amount": {"amount_minor": 73_456, "currency": "EUR"}, "paid_at": now}
    });
    relance_kafka::ConsumedRecord {
        topic: settings.kafka.topics.payments.clone(),
        partition: 0,
        offset: 0,
        key: Some(customer.as_bytes().to_vec()),
        payload: Some(serde_json::to_vec(&event).unwrap()),
        headers: vec![],
        timestamp_ms: None,
    }
}

/// Ingests `records` as the ingestor does (its own handler, its locks and transaction); returns
/// once they are committed.
pub async fn ingest(settings: &Settings, records: &[relance_kafka::ConsumedRecord]) {
    use relance_kafka::BatchHandler as _;
    let producer = EventProducer::new(&settings.kafka, "test").unwrap();
    let mut ingestor = relance_ingestor::handler::IngestHandler::new(
        pool(settings),
        Arc::new(relance_runtime::SystemClock),
        relance_kafka::DeadLetterWriter::new(
            producer,
            settings.kafka.topics.dlq.clone(),
            "ingestor",
        ),
        settings.kafka.topics.events.clone(),
        relance_ingestor::metrics::IngestMetrics::register(&prometheus::Registry::new()).unwrap(),
        relance_kafka::KafkaMetrics::register(&prometheus::Registry::new()).unwrap(),
        Arc::new(tokio::sync::Notify::new()),
    );
    ingestor.handle(records).await.expect("the records apply");
}

/// The value of a counter with these labels in a Prometheus text exposition (0 if absent).
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
        })
        .sum()
}
