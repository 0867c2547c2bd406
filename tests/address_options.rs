//! The address options: `chat-server --bind` takes a literal address or
//! `localhost`; `chat-client --server` takes HOST:PORT. A malformed one is a
//! usage error (exit 2) worded alike by both, naming the option.

#[path = "common/client.rs"]
mod client_harness;

use client_harness::{run_to_end, CLIENT};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

/// Runs `bin` with `args` to its end (bounded): its exit code and stderr.
fn run_bounded(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    let (status, _, stderr) = run_to_end(cmd);
    (status.code(), stderr)
}

#[test]
fn binds_localhost_as_the_ipv4_loopback_address() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(BIN)
        .args(["--bind", "localhost:0", "--db", "none", "--key"])
        .arg(dir.path().join("server.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-server");
    // The first line is read on a thread so that the wait for it is bounded.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = tx.send(BufReader::new(stderr).read_line(&mut first).map(|_| first));
    });
    let read = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let first = read
        .expect("a first line within 10 s")
        .expect("read the first line");
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
}

#[test]
fn a_bad_bind_address_is_a_usage_error() {
    for (bad, why) in [
        ("127.0.0.1", "expected HOST:PORT"),
        ("example.invalid:80", "not an IP address or localhost"),
        ("localhost:99999", "not a port"),
        ("::1:80", "brackets"),
    ] {
        let (code, stderr) = run_bounded(BIN, &["--bind", bad]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        let prefix = format!("error: invalid value '{bad}' for '--bind <ADDR>': ");
        assert!(first.starts_with(&prefix), "{bad}: {first}");
        assert!(first.contains(why), "{bad}: {first}");
    }
}

#[test]
fn a_bad_server_address_is_a_usage_error_worded_as_the_servers() {
    for (bad, why) in [
        ("127.0.0.1", "expected HOST:PORT"),
        ("localhost:99999", "not a port"),
        ("::1:80", "brackets"),
    ] {
        let (code, stderr) = run_bounded(CLIENT, &["--server", bad, "--name", "x"]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        let prefix = format!("error: invalid value '{bad}' for '--server <ADDR>': ");
        assert!(first.starts_with(&prefix), "{bad}: {first}");
        assert!(first.contains(why), "{bad}: {first}");
        let (_, server) = run_bounded(BIN, &["--bind", bad]);
        let reason = |line: &str| line.split_once("': ").map(|(_, r)| r.to_string());
        assert_eq!(reason(first), reason(server.lines().next().unwrap_or("")));
    }
}
