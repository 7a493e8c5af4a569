//! One lock order everywhere (customers, then invoices, then reminders, then the outbox):
//! the ingestor, the admin API and the tracker act on the same customer's invoices at once,
//! and no transaction deadlocks, no person gets a server error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, Utc};
use relance_config::ServiceName;
use relance_domain::{Currency, InvoiceFact, Money};
use relance_e2e::{logged_address, service_binary};
use relance_kafka::{EventProducer, OutgoingRecord};
use relance_links::{LinkAction, LinkClaims, LinkSigner};
use relance_testkit::{
    create_unique_database, create_unique_topics, customer_event, invoice_event, seed, service_env,
    settings_overrides, test_settings, unique_name, wait_for, ServiceProcess,
};
use serde_json::json;
use tokio::sync::Mutex;

const TOKEN: &str = "dev-only-admin-token-not-for-production";
const CUSTOMER: &str = "cus_lock";
const INVOICES: usize = 6;
const RUN_FOR: Duration = Duration::from_secs(20);

type Statuses = Arc<Mutex<BTreeMap<String, u64>>>;

async fn count(statuses: &Statuses, what: &str, status: u16) {
    *statuses
        .lock()
        .await
        .entry(format!("{what} {status}"))
        .or_default() += 1;
}

fn invoice(index: usize) -> String {
    format!("inv_lock_{index}")
}

#[tokio::test]
async fn the_ingestor_the_admin_api_and_the_tracker_on_one_customer_never_deadlock() {
    let mut settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    settings.kafka.topics = create_unique_topics(&settings, "locks", 2).await;
    settings.ingestor.group_id = unique_name("locks-ingestor");
    settings.tracker.group_id = unique_name("locks-tracker");
    // A VIP: every reminder waits for a person's approval, so the admin API has some to decide.
    // The services' clock shows ten in the morning in Paris (reminders go out in business
    // hours), running at the real pace.
    let epoch = Utc::now();
    let now = epoch.date_naive().and_hms_opt(9, 0, 0).unwrap().and_utc();
    let today = now.date_naive();
    let mut events = vec![customer_event("acme", CUSTOMER, true, now)];
    for index in 0..INVOICES {
        events.push(invoice_event(
            "acme",
            CUSTOMER,
            &invoice(index),
            &format!("issued-{index}"),
            now,
            InvoiceFact::Issued {
                number: format!("F-LOCK-{index}"),
                issued_on: today.checked_sub_days(Days::new(40)).unwrap(),
                due_on: today.checked_sub_days(Days::new(10)).unwrap(),
                total: Money::new(10_000_000, Currency::parse("EUR").unwrap()).unwrap(),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: None,
            },
        ));
    }
    seed(&settings, events, now).await;

    let mut overrides = settings_overrides(&settings);
    overrides.push((
        "RELANCE__TRACKER__GROUP_ID",
        settings.tracker.group_id.clone(),
    ));
    overrides.push(("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "100000".into()));
    overrides.push(("RELANCE__RUNTIME__CLOCK__START", now.to_rfc3339()));
    overrides.push(("RELANCE__RUNTIME__CLOCK__EPOCH", epoch.to_rfc3339()));
    let mut ingestor =
        ServiceProcess::spawn(&service_binary("ingestor"), service_env(&overrides)).await;
    let mut scheduler =
        ServiceProcess::spawn(&service_binary("scheduler"), service_env(&overrides)).await;
    let mut tracker =
        ServiceProcess::spawn(&service_binary("tracker"), service_env(&overrides)).await;
    let admin = format!(
        "http://{}",
        logged_address(&mut scheduler, "Serving the admin API").await
    );
    let public = format!(
        "http://{}",
        logged_address(&mut tracker, "Serving the public pages").await
    );
    let pool = relance_storage::lazy_pool(&settings.database, "e2e");
    wait_for(
        Duration::from_secs(60),
        "reminders awaiting approval",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM reminders WHERE status = 'awaiting_approval'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let statuses: Statuses = Arc::default();
    let payments = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();

    // The billing system: a payment of one cent on every invoice, in bursts, so that each
    // ingestor batch locks the customer and all its invoices.
    {
        let stop = stop.clone();
        let payments = payments.clone();
        let settings = settings.clone();
        workers.push(tokio::spawn(async move {
            let producer = EventProducer::new(&settings.kafka, "e2e").unwrap();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for index in 0..INVOICES {
                    let event = json!({
                        "specversion": "1.0",
                        "id": format!("evt_pay_{round}_{index}"),
                        "source": "/billing/acme",
                        "type": "billing.payment.succeeded",
                        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "datacontenttype": "application/json",
                        "tenant": "acme",
                        "schemaversion": 1,
                        "partitionkey": CUSTOMER,
                        "data": {
                            "payment_id": format!("pay_{round}_{index}"),
                            "invoice_id": invoice(index),
                            "customer_id": CUSTOMER,
                            "amount": {"amount_minor": 1, "currency": "EUR"},
                            "paid_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            "method": "bank_transfer"
                        }
                    });
                    producer
                        .send(&OutgoingRecord {
                            topic: settings.kafka.topics.payments.clone(),
                            key: Some(CUSTOMER.as_bytes().to_vec()),
                            payload: serde_json::to_vec(&event).unwrap(),
                            headers: vec![],
                        })
                        .await
                        .unwrap();
                    payments.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Credit managers: pause and resume invoices and the customer, approve and reject.
    for worker in 0..2 {
        let stop = stop.clone();
        let statuses = statuses.clone();
        let admin = admin.clone();
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let post = |path: String, body: serde_json::Value| {
                http.post(format!("{admin}{path}"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
            };
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let waiting: serde_json::Value = http
                    .get(format!("{admin}/v1/approvals"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for reminder in waiting.as_array().into_iter().flatten().take(2) {
                    let id = reminder["reminder_id"].as_str().unwrap();
                    let decision = if round % 2 == 0 { "approve" } else { "reject" };
                    let status = post(
                        format!("/v1/approvals/{id}/{decision}"),
                        json!({"reason": "lock test", "note": "lock test"}),
                    )
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                    count(&statuses, &format!("admin {decision}"), status).await;
                }
                // The half the customer acts on too; the other half keeps reminders to decide.
                let target = invoice((round + worker) % (INVOICES / 2));
                for action in ["pause", "resume"] {
                    let status = post(
                        format!("/v1/invoices/{target}/{action}"),
                        json!({"reason": "lock test"}),
                    )
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                    count(&statuses, &format!("admin invoice {action}"), status).await;
                }
                if round % 10 == 0 {
                    for action in ["pause", "resume"] {
                        let status = post(
                            format!("/v1/customers/{CUSTOMER}/{action}"),
                            json!({"reason": "lock test"}),
                        )
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                        count(&statuses, &format!("admin customer {action}"), status).await;
                    }
                }
            }
        }));
    }

    // The customer, on the tracker's action pages: promises and "already paid".
    for worker in 0..2_usize {
        let stop = stop.clone();
        let statuses = statuses.clone();
        let public = public.clone();
        workers.push(tokio::spawn(async move {
            let signer = LinkSigner::from_text(
                &std::fs::read_to_string(relance_testkit::config_dir().join("dev-link-keys"))
                    .unwrap(),
            )
            .unwrap();
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut round: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let action = if round % 2 == 0 {
                    LinkAction::PromiseToPay
                } else {
                    LinkAction::AlreadyPaid
                };
                let claims = LinkClaims {
                    t: "acme".into(),
                    // Half the invoices: the others stay in dunning, with reminders to decide.
                    i: invoice((usize::try_from(round).unwrap() + worker) % (INVOICES / 2)),
                    c: CUSTOMER.into(),
                    r: uuid::Uuid::new_v4(),
                    a: action,
                    // A new token each time: each records a new action.
                    exp: (Utc::now() + chrono::Duration::days(30)).timestamp() + round,
                    u: None,
                };
                let form = match action {
                    LinkAction::PromiseToPay => vec![(
                        "promised_on",
                        (Utc::now().date_naive() + Days::new(10)).to_string(),
                    )],
                    _ => vec![("reference", format!("VIR-{worker}-{round}"))],
                };
                let status = http
                    .post(signer.url(&public, &claims))
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                count(&statuses, &format!("tracker {}", action.path()), status).await;
            }
        }));
    }

    tokio::time::sleep(RUN_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let published = payments.load(Ordering::Relaxed);
    let applied: i64 = wait_for(
        Duration::from_secs(60),
        "every payment to be applied",
        || async {
            let applied: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM processed_events WHERE event_id LIKE 'evt_pay_%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (u64::try_from(applied).unwrap() >= published).then_some(applied)
        },
    )
    .await;
    let statuses = statuses.lock().await.clone();
    eprintln!("{applied} payments applied; responses: {statuses:?}");
    for (what, times) in &statuses {
        assert!(
            !what.rsplit(' ').next().unwrap().starts_with('5'),
            "{what}: {times} times; all: {statuses:?}"
        );
    }
    // Deciding locks the reminder's customer, then the reminder: it ran, whether the reminder
    // was still waiting (200) or a payment had just cancelled it (409).
    assert!(
        statuses
            .keys()
            .any(|what| what.starts_with("admin approve") || what.starts_with("admin reject")),
        "reminders were decided: {statuses:?}"
    );
    assert!(
        statuses
            .keys()
            .any(|what| what.starts_with("tracker") && what.ends_with(" 200")),
        "the customer's actions were recorded: {statuses:?}"
    );
    // The statistics collector reports deadlocks the database detected in this database.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deadlocks: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let logged: Vec<String> = [&mut ingestor, &mut scheduler, &mut tracker]
        .into_iter()
        .flat_map(|process| {
            process
                .logs()
                .iter()
                .filter(|line| line.contains("deadlock"))
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(deadlocks, 0, "deadlocks detected; logs: {logged:#?}");
    assert!(logged.is_empty(), "{logged:#?}");
    for mut process in [ingestor, scheduler, tracker] {
        assert!(process
            .signal_and_wait("TERM", Duration::from_secs(20))
            .await
            .success());
    }
}
