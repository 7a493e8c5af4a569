//! Test helpers shared by relance's integration tests. Tests run against the real broker and
//! PostgreSQL that `make up` starts (config/test.toml), each in its own topics and database.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

mod broker;
mod postgres;
mod process;
mod seed;
#[doc(hidden)]
pub mod service_tests;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use relance_config::{ConfigSource, ServiceName, Settings, TopicSettings};
use relance_kafka::TopicSpec;

pub use broker::PrivateBroker;
pub use postgres::TempPostgres;
pub use process::{run_to_completion, service_env, settings_overrides, ServiceProcess};
pub use seed::{
    customer_event, customer_event_in, invoice_event, reminder_command, seed, seed_open_invoice,
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's `config/` folder.
pub fn config_dir() -> PathBuf {
    repo_root().join("config")
}

/// The `RELANCE__...` variables of this process, so `make test` can point tests elsewhere.
pub fn relance_env_vars() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| key.starts_with("RELANCE__"))
        .collect()
}

/// Settings of the `test` environment, validated for `service`.
pub fn test_settings(service: ServiceName) -> Settings {
    let source = ConfigSource::with_env_vars(config_dir(), "test", relance_env_vars());
    Settings::load(&source, service).unwrap_or_else(|error| panic!("test settings: {error}"))
}

/// A name no other test uses: `relance-test-<label>-<random>`.
pub fn unique_name(label: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("relance-test-{label}-{}", &random[..12])
}

/// Creates `count`-partition topics with unique names for every relance topic and returns them.
pub async fn create_unique_topics(
    settings: &Settings,
    label: &str,
    partitions: i32,
) -> TopicSettings {
    let suffix = unique_name(label);
    let topics = TopicSettings {
        invoices: format!("{suffix}.billing.invoices"),
        payments: format!("{suffix}.billing.payments"),
        customers: format!("{suffix}.billing.customers"),
        reminders: format!("{suffix}.relance.reminders"),
        tasks: format!("{suffix}.relance.tasks"),
        events: format!("{suffix}.relance.events"),
        dlq: format!("{suffix}.relance.dlq"),
    };
    let specs: Vec<TopicSpec> = topics
        .all()
        .iter()
        .map(|(_, name)| TopicSpec {
            name: (*name).to_string(),
            partitions,
            replication_factor: 1,
        })
        .collect();
    relance_kafka::ensure_topics(&settings.kafka, "test", &specs)
        .await
        .expect("creating test topics (is the broker up? `make up`)");
    topics
}

/// Creates a database with a unique name on the test server, migrated, and returns settings
/// that point to it.
pub async fn create_unique_database(settings: &Settings) -> Settings {
    let name = unique_name("db").replace('-', "_");
    let mut admin_settings = settings.database.clone();
    admin_settings.database_name = "postgres".into();
    let admin = relance_storage::lazy_pool(&admin_settings, "relance-testkit");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&admin)
        .await
        .expect("creating a test database (is PostgreSQL up? `make up`)");
    admin.close().await;
    let mut settings = settings.clone();
    settings.database.database_name = name;
    let pool = relance_storage::lazy_pool(&settings.database, "relance-testkit");
    relance_storage::migrate(&pool)
        .await
        .expect("migrating the test database");
    pool.close().await;
    settings
}

/// Polls `condition` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Reads `topic` (with `partitions` partitions) from the beginning until `count` records
/// arrived or `timeout` passed.
pub async fn read_topic(
    settings: &Settings,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<relance_kafka::ConsumedRecord> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    let consumer: StreamConsumer =
        relance_kafka::consumer_config(&settings.kafka, "test-reader", &unique_name("reader"))
            .create()
            .expect("reader");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while records.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => records.push(relance_kafka::ConsumedRecord {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                (header.key.to_string(), header.value.map(<[u8]>::to_vec))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp_ms: message.timestamp().to_millis(),
            }),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => break,
        }
    }
    records
}
