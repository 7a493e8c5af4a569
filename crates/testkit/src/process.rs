//! A service binary run as a real process, as Kubernetes runs it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running service process whose logs are captured.
pub struct ServiceProcess {
    child: Child,
    ops_address: String,
    logs: mpsc::UnboundedReceiver<String>,
    seen_logs: Vec<String>,
}

/// The environment of a test service process: the repository's `test` configuration, logs at
/// info (the ops address is read from them), plus `overrides`.
pub fn service_env(overrides: &[(&str, String)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = crate::relance_env_vars();
    env.insert(
        "RELANCE_CONFIG_DIR".into(),
        crate::config_dir().to_string_lossy().into(),
    );
    env.insert("RELANCE_ENV".into(), "test".into());
    env.insert(
        "RELANCE__TELEMETRY__LOG_LEVEL".into(),
        "info,sqlx=warn".into(),
    );
    env.insert("RELANCE__TELEMETRY__LOG_FORMAT".into(), "json".into());
    for (key, value) in overrides {
        env.insert((*key).to_string(), value.clone());
    }
    env
}

/// The `RELANCE__...` overrides that point a service process at `settings`' database, consumer
/// group and topics.
pub fn settings_overrides(settings: &relance_config::Settings) -> Vec<(&'static str, String)> {
    let topics = &settings.kafka.topics;
    vec![
        (
            "RELANCE__DATABASE__DATABASE_NAME",
            settings.database.database_name.clone(),
        ),
        (
            "RELANCE__DATABASE__PORT",
            settings.database.port.to_string(),
        ),
        (
            "RELANCE__KAFKA__BOOTSTRAP_SERVERS",
            settings.kafka.bootstrap_servers.clone(),
        ),
        (
            "RELANCE__INGESTOR__GROUP_ID",
            settings.ingestor.group_id.clone(),
        ),
        (
            "RELANCE__SENDER__GROUP_ID",
            settings.sender.group_id.clone(),
        ),
        ("RELANCE__KAFKA__TOPICS__INVOICES", topics.invoices.clone()),
        ("RELANCE__KAFKA__TOPICS__PAYMENTS", topics.payments.clone()),
        (
            "RELANCE__KAFKA__TOPICS__CUSTOMERS",
            topics.customers.clone(),
        ),
        (
            "RELANCE__KAFKA__TOPICS__REMINDERS",
            topics.reminders.clone(),
        ),
        ("RELANCE__KAFKA__TOPICS__TASKS", topics.tasks.clone()),
        ("RELANCE__KAFKA__TOPICS__EVENTS", topics.events.clone()),
        ("RELANCE__KAFKA__TOPICS__DLQ", topics.dlq.clone()),
    ]
}

impl ServiceProcess {
    /// Starts `binary` with `env` and waits until it logs the address of its ops endpoints.
    pub async fn spawn(binary: &Path, env: HashMap<String, String>) -> Self {
        let mut child = Command::new(binary)
            .env_clear()
            .envs(std::env::vars().filter(|(key, _)| !key.starts_with("RELANCE")))
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let (sender, logs) = mpsc::unbounded_channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("{line}");
                    }
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut process = Self {
            child,
            ops_address: String::new(),
            logs,
            seen_logs: Vec::new(),
        };
        let line = process
            .wait_for_log(Duration::from_secs(30), |line| {
                line.contains("Serving /metrics")
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{} did not start serving its ops endpoints; logs:\n{}",
                    binary.display(),
                    process.seen_logs.join("\n")
                )
            });
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        process.ops_address = json["address"].as_str().expect("address field").to_string();
        process
    }

    /// Waits until a log line matches, returning it.
    pub async fn wait_for_log(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        if let Some(line) = self.seen_logs.iter().find(|line| matches(line)) {
            return Some(line.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.logs.recv()).await {
                Ok(Some(line)) => {
                    self.seen_logs.push(line.clone());
                    if matches(&line) {
                        return Some(line);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every log line seen so far.
    pub fn logs(&mut self) -> &[String] {
        while let Ok(line) = self.logs.try_recv() {
            self.seen_logs.push(line);
        }
        &self.seen_logs
    }

    /// `http://<ops address>`.
    pub fn ops_url(&self) -> String {
        format!("http://{}", self.ops_address)
    }

    /// GETs an ops endpoint: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.ops_url()))
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) and waits for the exit, at most `timeout`.
    pub async fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().expect("process still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
        self.wait(timeout).await
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "the process did not exit within {timeout:?}; logs:\n{}",
                    self.logs().join("\n")
                );
            }
        }
    }
}

/// Runs `binary` to completion with `env` and `args`: (exit code, stdout, stderr).
pub async fn run_to_completion(
    binary: &Path,
    env: HashMap<String, String>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let output = Command::new(binary)
        .env_clear()
        .envs(std::env::vars().filter(|(key, _)| !key.starts_with("RELANCE")))
        .envs(env)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| panic!("running {}: {error}", binary.display()));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
