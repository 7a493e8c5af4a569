//! A private, throwaway PostgreSQL cluster, for tests that stop and start the database.

use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL 15 cluster in a temporary folder, on its own port, stopped and deleted on drop.
pub struct TempPostgres {
    data_dir: tempfile::TempDir,
    port: u16,
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN_DIR").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    dir.join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server command, as the postgres user when we are root (postgres refuses root).
fn run_as_postgres(program: PathBuf, args: &[&str]) -> std::process::Output {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&program);
        command
    } else {
        Command::new(&program)
    };
    command
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", program.display()))
}

impl TempPostgres {
    /// Creates and starts a cluster with trust authentication on 127.0.0.1.
    pub fn start() -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("relance-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(data_dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the temporary cluster folder");
        }
        let path = data_dir.path().to_string_lossy().to_string();
        let output = run_as_postgres(
            bin("initdb"),
            &[
                "-D",
                &path,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        );
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self {
            data_dir,
            port: crate::free_port(),
        };
        cluster.resume();
        cluster
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: connections are cut, as in an outage).
    pub fn stop(&self) {
        let path = self.data_dir.path().to_string_lossy().to_string();
        let output = run_as_postgres(bin("pg_ctl"), &["-D", &path, "-m", "fast", "-w", "stop"]);
        assert!(
            output.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server again on the same port with the same data.
    pub fn resume(&self) {
        let path = self.data_dir.path().to_string_lossy().to_string();
        let log = self
            .data_dir
            .path()
            .join("server.log")
            .to_string_lossy()
            .to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={path} -c fsync=off",
            self.port
        );
        let output = run_as_postgres(
            bin("pg_ctl"),
            &[
                "-D", &path, "-l", &log, "-w", "-t", "30", "start", "-o", &options,
            ],
        );
        assert!(
            output.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let path = self.data_dir.path().to_string_lossy().to_string();
        let _ = run_as_postgres(
            bin("pg_ctl"),
            &["-D", &path, "-m", "immediate", "-w", "stop"],
        );
    }
}
