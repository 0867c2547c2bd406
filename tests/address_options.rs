//! The address options: `chat-server --bind` takes a literal address or
//! `localhost`; `chat-client --server` takes HOST:PORT. A malformed one is a
//! usage error (exit 2) worded alike by both, naming the option.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_chat-client");

/// Runs `bin` with `args`; it must exit within 10 s. Returns its exit code
/// and stderr.
fn run_bounded(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
