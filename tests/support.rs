//! Support for the end-to-end tests: where the service binaries are.

use std::path::PathBuf;

/// The path of a service binary built in the same target folder as the running test.
///
/// # Panics
/// When the binary is missing: build it first (`cargo build --bins`, which `make test` does by
/// running the whole workspace's tests).
pub fn service_binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let profile_dir = test_executable
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} not found: build the services first (cargo build --bins)",
        binary.display()
    );
    binary
}

/// The address a service process logged with `message` (its admin API, its public pages).
///
/// # Panics
/// When the service does not log it within 30 seconds.
pub async fn logged_address(
    process: &mut relance_testkit::ServiceProcess,
    message: &str,
) -> String {
    let line = process
        .wait_for_log(std::time::Duration::from_secs(30), |line| {
            line.contains(message)
        })
        .await
        .unwrap_or_else(|| panic!("no log line {message:?}"));
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    json["address"]
        .as_str()
        .expect("an address field")
        .to_string()
}
