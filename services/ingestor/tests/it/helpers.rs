//! An ingestor per test, with its own database and topics, and verbs to drive it.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use relance_config::{ServiceName, Settings};
use relance_contracts::{decode::decode, BillingEvent};
use relance_domain::{Book, CustomerFacts, DunningView, Invoice};
use relance_ingestor::convert::to_book_event;
use relance_ingestor::Ingestor;
use relance_kafka::{ConsumedRecord, EventProducer, OutgoingRecord};
use relance_runtime::{Application, ManualClock, RuntimeError};
use relance_testkit::{
    create_unique_database, create_unique_topics, test_settings, unique_name, wait_for,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::simulator::{Published, TopicKind};

pub const PARTITIONS: i32 = 4;

/// The date the in-process ingestor's clock shows.
pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

/// Settings with a fresh database, fresh topics and a fresh consumer group.
pub async fn fresh_settings(label: &str) -> Settings {
    let settings = create_unique_database(&test_settings(ServiceName::Ingestor)).await;
    let mut settings = settings;
    settings.kafka.topics = create_unique_topics(&settings, label, PARTITIONS).await;
    settings.ingestor.group_id = unique_name(label);
    settings
}

/// A producer and a database pool on `settings`, to publish events and inspect the outcome.
pub struct World {
    pub settings: Settings,
    pub producer: EventProducer,
    pub pool: PgPool,
}

impl World {
    pub fn on(settings: Settings) -> Self {
        let producer = EventProducer::new(&settings.kafka, "test").expect("producer");
        let pool = relance_storage::lazy_pool(&settings.database, "test");
        Self {
            settings,
            producer,
            pool,
        }
    }

    pub fn topic(&self, kind: TopicKind) -> String {
        match kind {
            TopicKind::Invoices => self.settings.kafka.topics.invoices.clone(),
            TopicKind::Payments => self.settings.kafka.topics.payments.clone(),
            TopicKind::Customers => self.settings.kafka.topics.customers.clone(),
        }
    }

    /// Publishes events as a billing system would: keyed by customer, structured CloudEvents.
    pub async fn publish(&self, events: &[Published]) {
        let records: Vec<OutgoingRecord> = events
            .iter()
            .map(|event| OutgoingRecord {
                topic: self.topic(event.topic),
                key: Some(event.key.as_bytes().to_vec()),
                payload: serde_json::to_vec(&event.value).expect("json"),
                headers: vec![(
                    "content-type".into(),
                    Some(
                        relance_contracts::CLOUDEVENTS_CONTENT_TYPE
                            .as_bytes()
                            .to_vec(),
                    ),
                )],
            })
            .collect();
        for chunk in records.chunks(1000) {
            for result in self.producer.send_all(chunk).await {
                result.expect("published");
            }
        }
    }

    /// Publishes raw bytes, for records that are not events.
    pub async fn publish_raw(&self, topic: &str, key: &[u8], value: &[u8]) {
        self.producer
            .send(&OutgoingRecord {
                topic: topic.to_string(),
                key: Some(key.to_vec()),
                payload: value.to_vec(),
                headers: vec![("x-origin".into(), Some(b"test".to_vec()))],
            })
            .await
            .expect("published");
    }

    pub async fn processed_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'ingestor'")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }

    /// Waits until the ingestor has recorded `count` distinct events.
    pub async fn wait_processed(&self, count: usize, timeout: Duration) {
        wait_for(timeout, &format!("{count} processed events"), || async {
            (self.processed_count().await >= count as i64).then_some(())
        })
        .await;
    }

    pub async fn invoices(&self) -> BTreeMap<String, (Invoice, StoredState)> {
        self.invoices_by_tenant()
            .await
            .into_iter()
            .map(|((_, id), stored)| (id, stored))
            .collect()
    }

    /// Every invoice by (tenant, invoice id).
    pub async fn invoices_by_tenant(&self) -> BTreeMap<(String, String), (Invoice, StoredState)> {
        let rows: Vec<(String, String, serde_json::Value, String, Option<String>, Option<String>, i64, Option<NaiveDate>)> = sqlx::query_as(
            "SELECT tenant, invoice_id, facts, state, pause_reason, closed_reason, amount_due_minor, due_on FROM invoices",
        )
        .fetch_all(&self.pool)
        .await
        .expect("invoices");
        rows.into_iter()
            .map(
                |(
                    tenant,
                    id,
                    facts,
                    state,
                    pause_reason,
                    closed_reason,
                    amount_due_minor,
                    due_on,
                )| {
                    (
                        (tenant, id),
                        (
                            serde_json::from_value(facts).expect("facts"),
                            StoredState {
                                state,
                                pause_reason,
                                closed_reason,
                                amount_due_minor,
                                due_on,
                            },
                        ),
                    )
                },
            )
            .collect()
    }

    pub async fn customers(&self) -> BTreeMap<String, (CustomerFacts, StoredBehaviour)> {
        self.customers_by_tenant()
            .await
            .into_iter()
            .map(|((_, id), stored)| (id, stored))
            .collect()
    }

    /// Every customer by (tenant, customer id).
    pub async fn customers_by_tenant(
        &self,
    ) -> BTreeMap<(String, String), (CustomerFacts, StoredBehaviour)> {
        let rows: Vec<(String, String, serde_json::Value, i32, i32, i64, i32, serde_json::Value, serde_json::Value, Option<NaiveDate>)> = sqlx::query_as(
            "SELECT tenant, customer_id, facts, paid_invoices, paid_on_time, total_days_late, open_invoices, open_balance, lifetime_paid, first_invoice_on FROM customers",
        )
        .fetch_all(&self.pool)
        .await
        .expect("customers");
        rows.into_iter()
            .map(
                |(
                    tenant,
                    id,
                    facts,
                    paid_invoices,
                    paid_on_time,
                    total_days_late,
                    open_invoices,
                    open_balance,
                    lifetime_paid,
                    first_invoice_on,
                )| {
                    (
                        (tenant, id),
                        (
                            serde_json::from_value(facts).expect("facts"),
                            StoredBehaviour {
                                paid_invoices,
                                paid_on_time,
                                total_days_late,
                                open_invoices,
                                open_balance,
                                lifetime_paid,
                                first_invoice_on,
                            },
                        ),
                    )
                },
            )
            .collect()
    }

    /// Reads `topic` from the beginning until `count` records arrived (or `timeout`).
    pub async fn read_topic(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ConsumedRecord> {
        relance_testkit::read_topic(&self.settings, topic, PARTITIONS, count, timeout).await
    }

    pub async fn metrics_text(ops: SocketAddr) -> String {
        reqwest::get(format!("http://{ops}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body")
    }
}

/// The state columns of an invoice row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    pub state: String,
    pub pause_reason: Option<String>,
    pub closed_reason: Option<String>,
    pub amount_due_minor: i64,
    pub due_on: Option<NaiveDate>,
}

impl StoredState {
    pub fn of(view: &DunningView) -> Self {
        use relance_domain::DunningState;
        Self {
            state: view.state.name().to_string(),
            pause_reason: match view.state {
                DunningState::Paused { reason, .. } => Some(reason.code().to_string()),
                _ => None,
            },
            closed_reason: match view.state {
                DunningState::Closed { reason } => Some(reason.code().to_string()),
                _ => None,
            },
            amount_due_minor: view.amount_due_minor,
            due_on: view.due_on,
        }
    }
}

/// The behaviour columns of a customer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBehaviour {
    pub paid_invoices: i32,
    pub paid_on_time: i32,
    pub total_days_late: i64,
    pub open_invoices: i32,
    pub open_balance: serde_json::Value,
    pub lifetime_paid: serde_json::Value,
    pub first_invoice_on: Option<NaiveDate>,
}

/// Replays `events`, in order and without duplicates, through the pure domain model.
pub fn replay_through_the_model(events: &[Published], today: NaiveDate) -> Book {
    let mut book = Book::default();
    let mut seen = HashSet::new();
    for published in events {
        let bytes = serde_json::to_vec(&published.value).expect("json");
        let envelope = decode::<BillingEvent>(&bytes).expect("the stream is valid");
        if !seen.insert((envelope.source.clone(), envelope.id.to_string())) {
            continue;
        }
        let event = to_book_event(&envelope).expect("converts");
        book.apply(&event, today)
            .expect("the stream has nothing to refuse");
    }
    book
}

/// Asserts the database holds exactly what the model says.
pub async fn assert_database_matches_model(world: &World, model: &Book, today: NaiveDate) {
    let stored = world.invoices_by_tenant().await;
    assert_eq!(stored.len(), model.invoices.len(), "number of invoices");
    for (id, invoice) in &model.invoices {
        let (facts, state) = stored
            .get(id)
            .unwrap_or_else(|| panic!("invoice {id:?} missing"));
        assert_eq!(facts, invoice, "facts of {id:?}");
        assert_eq!(
            *state,
            StoredState::of(&invoice.view(today)),
            "state of {id:?}"
        );
    }
    let customers = world.customers_by_tenant().await;
    assert_eq!(
        customers.len(),
        model.customers.len(),
        "number of customers"
    );
    for (id, facts) in &model.customers {
        let (stored_facts, behaviour) = customers
            .get(id)
            .unwrap_or_else(|| panic!("customer {id:?} missing"));
        assert_eq!(stored_facts, facts, "profile of {id:?}");
        let expected = model.behaviour_of(&id.0, &id.1, today);
        assert_eq!(
            behaviour.paid_invoices, expected.paid_invoices as i32,
            "paid invoices of {id:?}"
        );
        assert_eq!(
            behaviour.paid_on_time, expected.paid_on_time as i32,
            "on time of {id:?}"
        );
        assert_eq!(
            behaviour.total_days_late, expected.total_days_late,
            "days late of {id:?}"
        );
        assert_eq!(
            behaviour.open_invoices, expected.open_invoices as i32,
            "open invoices of {id:?}"
        );
        assert_eq!(
            behaviour.open_balance,
            serde_json::to_value(&expected.open_balance).unwrap(),
            "open balance of {id:?}"
        );
        assert_eq!(
            behaviour.lifetime_paid,
            serde_json::to_value(&expected.lifetime_paid).unwrap(),
            "lifetime paid of {id:?}"
        );
        assert_eq!(
            behaviour.first_invoice_on, expected.first_invoice_on,
            "first invoice of {id:?}"
        );
    }
}

/// An ingestor running in this process, with a clock stopped at [`today`].
pub struct TestIngestor {
    pub world: World,
    pub ops: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl TestIngestor {
    pub async fn spawn(label: &str) -> Self {
        let settings = fresh_settings(label).await;
        Self::spawn_on(settings).await
    }

    pub async fn spawn_on(settings: Settings) -> Self {
        let clock =
            ManualClock::new(Utc.from_utc_datetime(&today().and_hms_opt(12, 0, 0).unwrap()));
        let application =
            Application::<Ingestor>::build_with_clock(settings.clone(), Arc::new(clock))
                .await
                .expect("ingestor builds");
        let ops = application.ops_address();
        let shutdown = application.shutdown_token();
        let task = tokio::spawn(application.run_until_stopped());
        Self {
            world: World::on(settings),
            ops,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops in time")
            .expect("task")
            .expect("clean stop");
    }
}
