//! Running the real `otus` binary as separate processes, as in Kubernetes.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

pub const OTUS: &str = env!("CARGO_BIN_EXE_otus");

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `otus <sub>` and waits (bounded) for its "listening" log line;
/// returns the process and that line's fields (the bound addresses).
pub fn start(sub: &str, env: &[(&str, String)]) -> (Proc, Value) {
    let mut cmd = Command::new(OTUS);
    cmd.arg(sub)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start otus");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("listening") || m.contains(" listening: "))
            {
                let _ = tx.send(v);
            }
        }
    });
    let proc = Proc(child);
    let fields = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("otus {sub} did not log that it is listening within 60 s"));
    (proc, fields)
}

/// `name:` value in kB from /proc/<pid>/status, in bytes.
pub fn proc_status_bytes(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}
