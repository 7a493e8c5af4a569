//! The loop credit managers care about: a reminder is sent, the customer opens it and clicks
//! pay, the payment comes in, and it shows up as recovered amount for that step and template.

use std::time::Duration;

use base64::Engine as _;
use relance_config::ServiceName;
use relance_e2e::service_binary;
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_testkit::{
    create_unique_database, create_unique_topics, free_port, reminder_command, seed_open_invoice,
    service_env, settings_overrides, test_settings, unique_name, wait_for, ServiceProcess,
};
use serde_json::json;

const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

/// The quoted link of `html` that contains `path`.
fn link_containing(html: &str, path: &str) -> String {
    let at = html
        .find(path)
        .unwrap_or_else(|| panic!("{path} in {html}"));
    let start = html[..at].rfind('"').unwrap() + 1;
    let end = at + html[at..].find('"').unwrap();
    html[start..end].to_string()
}

fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn a_payment_after_a_click_is_recovered_amount_for_the_reminders_step_and_template() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Tracker)).await;
    settings.kafka.topics = create_unique_topics(&settings, "attribution", 4).await;
    settings.sender.group_id = unique_name("attribution-sender");
    let folder = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut overrides = settings_overrides(&settings);
    overrides.extend([
        (
            "RELANCE__SENDER__PROVIDERS__FILE__FOLDER",
            folder.path().display().to_string(),
        ),
        (
            "RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS",
            format!("127.0.0.1:{port}"),
        ),
        (
            "RELANCE__LINKS__PUBLIC_BASE_URL",
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "RELANCE__TRACKER__GROUP_ID",
            unique_name("attribution-tracker"),
        ),
        // The test opens and clicks within seconds of sending; people do not, scanners do.
        ("RELANCE__TRACKER__OPEN_TOO_SOON_SECONDS", "0".into()),
        ("RELANCE__TRACKER__CLICK_TOO_SOON_SECONDS", "0".into()),
    ]);
    let mut sender =
        ServiceProcess::spawn(&service_binary("sender"), service_env(&overrides)).await;
    let mut tracker =
        ServiceProcess::spawn(&service_binary("tracker"), service_env(&overrides)).await;

    seed_open_invoice(&settings, "acme", "cus_loop", "inv_loop", 73_456).await;
    let command = reminder_command("acme", "cus_loop", "inv_loop", "camille@example.fr", 73_456);
    let producer = EventProducer::new(&settings.kafka, "e2e").unwrap();
    let send = |topic: &str, value: &serde_json::Value| OutgoingRecord {
        topic: topic.to_string(),
        key: Some(b"cus_loop".to_vec()),
        payload: serde_json::to_vec(value).unwrap(),
        headers: vec![],
    };
    producer
        .send(&send(&settings.kafka.topics.reminders, &command))
        .await
        .unwrap();

    let eml = wait_for(Duration::from_secs(60), "the reminder email", || async {
        let path = std::fs::read_dir(folder.path())
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "eml"))?;
        std::fs::read_to_string(path).ok()
    })
    .await;
    let html_part = eml
        .split(
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        )
        .nth(1)
        .unwrap();
    let encoded: String = html_part.split("\r\n--").next().unwrap().lines().collect();
    let html = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let pay = link_containing(&html, "/l/pay/");
    let pixel = link_containing(&html, "/l/o/");
    assert!(
        pay.starts_with(&format!("http://127.0.0.1:{port}/l/pay/")),
        "{pay}"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = http
        .get(&pixel)
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let clicked = http
        .get(&pay)
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 303);
    assert_eq!(
        clicked.headers()["location"],
        "https://pay.acme.example/i/inv_loop"
    );

    let paid_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payment = json!({
        "specversion": "1.0", "id": "pay-evt-loop", "source": "/billing/acme", "type": "billing.payment.succeeded",
        "time": paid_at, "tenant": "acme", "schemaversion": 1, "partitionkey": "cus_loop",
        "data": {"payment_id": "pay_loop", "invoice_id": "inv_loop", "customer_id": "cus_loop",
                 "amount": {"amount_minor": 73_456, "currency": "EUR"}, "paid_at": paid_at}
    });
    // A record nobody can read first: the tracker counts it and goes on (the ingestor would
    // dead-letter it). Then the payment, in binary content mode, as the CloudEvents SDKs write it.
    producer
        .send(&OutgoingRecord {
            topic: settings.kafka.topics.payments.clone(),
            key: Some(b"cus_loop".to_vec()),
            payload: b"{not json".to_vec(),
            headers: vec![],
        })
        .await
        .unwrap();
    let mut headers: Vec<(String, Option<Vec<u8>>)> = payment
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.as_str() != "data")
        .map(|(name, value)| {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            (format!("ce_{name}"), Some(text.into_bytes()))
        })
        .collect();
    headers.push(("content-type".into(), Some(b"application/json".to_vec())));
    producer
        .send(&OutgoingRecord {
            topic: settings.kafka.topics.payments.clone(),
            key: Some(b"cus_loop".to_vec()),
            payload: serde_json::to_vec(&payment["data"]).unwrap(),
            headers,
        })
        .await
        .unwrap();

    let pool = relance_storage::lazy_pool(&settings.database, "e2e");
    let (reminder_id, credited, model): (uuid::Uuid, i64, String) = wait_for(Duration::from_secs(60), "the attribution", || async {
        sqlx::query_as("SELECT reminder_id, credited_minor, model FROM attributions WHERE payment_id = 'pay_loop'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(
        reminder_id.to_string(),
        command["data"]["reminder_id"].as_str().unwrap()
    );
    assert_eq!((credited, model.as_str()), (73_456, "last_touch"));

    // The tracker counts an attribution once its transaction has committed: the row can be
    // seen a moment before the counters move.
    let metrics = wait_for(
        Duration::from_secs(10),
        "the attribution counted",
        || async {
            let (_, metrics) = tracker.get("/metrics").await;
            (counter(&metrics, "relance_time_to_payment_seconds_count", &[]) >= 1.0)
                .then_some(metrics)
        },
    )
    .await;
    let reminder = [
        "step=\"first_reminder\"",
        "template=\"first_reminder\"",
        "channel=\"email\"",
        "segment=\"standard\"",
    ];
    let with = |extra: &'static str| {
        reminder
            .iter()
            .copied()
            .chain(std::iter::once(extra))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counter(
            &metrics,
            "relance_recovered_amount_minor_total",
            &with("currency=\"EUR\"")
        ),
        73_456.0,
        "{metrics}"
    );
    assert_eq!(
        counter(
            &metrics,
            "relance_payments_attributed_total",
            &with("model=\"last_touch\"")
        ),
        1.0
    );
    assert_eq!(
        counter(
            &metrics,
            "relance_tracker_records_unreadable_total",
            &["reason=\"invalid_json\""]
        ),
        1.0,
        "the unreadable record is counted, not silently skipped"
    );
    assert_eq!(
        counter(&metrics, "relance_reminders_opened_total", &reminder),
        1.0
    );
    assert_eq!(
        counter(&metrics, "relance_reminders_clicked_total", &reminder),
        1.0
    );
    assert_eq!(
        counter(
            &metrics,
            "relance_time_to_payment_seconds_count",
            &["segment=\"standard\""]
        ),
        1.0
    );
    let events = relance_testkit::read_topic(
        &settings,
        &settings.kafka.topics.events,
        4,
        10,
        Duration::from_secs(5),
    )
    .await;
    let types: Vec<String> = events
        .iter()
        .filter_map(|record| {
            record
                .header("ce_type")
                .map(|value| String::from_utf8_lossy(value).into_owned())
        })
        .collect();
    for expected in [
        "relance.dunning.reminder_sent",
        "relance.dunning.reminder_opened",
        "relance.dunning.reminder_clicked",
        "relance.dunning.payment_attributed",
    ] {
        assert!(
            types.iter().any(|kind| kind == expected),
            "{expected} in {types:?}"
        );
    }
    for process in [&mut sender, &mut tracker] {
        assert!(process
            .signal_and_wait("TERM", Duration::from_secs(20))
            .await
            .success());
    }
}
