//! What the chat-load tests share: running chat-load, bounded, for its JSON.

use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The chat-load binary under test.
pub const LOAD: &str = env!("CARGO_BIN_EXE_chat-load");

/// Runs chat-load with `args` (without waiting for an idle machine; killed
/// and reaped after 60 s), returns its JSON reports.
pub fn json_reports(args: &[&str]) -> Vec<Value> {
    let child = Command::new(LOAD)
        .args(["--idle-wait", "0", "--json", "-"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-load");
    let out = output_within(child, Duration::from_secs(60), args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat-load {args:?} failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    v.as_array().expect("an array of reports").clone()
}

/// Waits for chat-load (run with `args`) to end and returns its output;
/// past `limit` it is killed and reaped, and the test fails.
pub fn output_within(mut child: Child, limit: Duration, args: &[&str]) -> Output {
    let end = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chat-load {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The number `k` of report `r`.
pub fn num(r: &Value, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {r}"))
}
