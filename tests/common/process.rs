//! The gateway binary run as a separate process, as operators run it, and its log lines.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// The gateway binary run as a separate process, as operators run it.
pub struct GatewayProcess {
    child: std::process::Child,
    /// The main listener, read from the `listening` log line.
    pub addr: SocketAddr,
    /// The admin listener, from the same line.
    pub admin: SocketAddr,
    logs: std::sync::mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl GatewayProcess {
    /// Starts `recipient-gateway run --config path` and waits for its `listening` line.
    pub fn spawn(config: &Path) -> GatewayProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recipient-gateway"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let (addr, admin) = loop {
            let line = logs
                .recv_timeout(Duration::from_secs(20))
                .expect("the gateway logs `listening`");
            seen.push(line.clone());
            if line["msg"] == "listening" {
                break (
                    line["address"].as_str().unwrap().parse().unwrap(),
                    line["admin"].as_str().unwrap().parse().unwrap(),
                );
            }
        };
        GatewayProcess {
            child,
            addr,
            admin,
            logs,
            seen,
        }
    }

    /// Sends a signal (`-TERM`, `-KILL`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (up to 10 s) for the next log line whose `msg` is `msg`; earlier lines are kept.
    pub fn wait_for_log(&mut self, msg: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{msg}` log line within 10 s"));
            self.seen.push(line.clone());
            if line["msg"] == msg {
                return line;
            }
        }
    }

    /// Waits for exit; returns the status and every log line.
    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let status = self.child.wait().unwrap();
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(self.logs.try_iter());
        (status, lines)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a log line is an access line with every field of reference §6.
pub fn assert_access_line(line: &Value) {
    assert_eq!(line["msg"], "request", "{line}");
    for field in [
        "ts",
        "level",
        "request_id",
        "route",
        "client",
        "method",
        "path",
        "status",
        "bytes",
        "outcome",
        "duration_ms",
        "redactions",
    ] {
        assert!(line.get(field).is_some(), "`{field}` missing: {line}");
    }
    assert!(!line["path"].as_str().unwrap().contains('?'), "{line}");
    let duration = line["duration_ms"].to_string();
    let decimals = duration.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "duration_ms in whole microseconds: {line}");
}
