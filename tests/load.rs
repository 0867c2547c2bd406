//! `chat-load` end to end, against the real `chat-server`: tiny runs whose
//! JSON must show every message delivered and sane figures. Behaviour only:
//! no speed is asserted (that is the benchmark's job, not a test's).

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_chat-load");
const SERVER: &str = env!("CARGO_BIN_EXE_chat-server");

/// Runs chat-load with `args` (bounded), returns its JSON reports.
fn load(args: &[&str]) -> Vec<Value> {
    let mut child = Command::new(LOAD)
        .args(["--server-bin", SERVER, "--idle-wait", "0", "--json", "-"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-load");
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chat-load {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat-load {args:?} failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    v.as_array().expect("an array of reports").clone()
}

fn num(r: &Value, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {r}"))
}

/// Every message reached every member but its sender, and the figures agree.
fn assert_complete(r: &Value, members: f64, messages: f64, senders: f64) {
    assert_eq!(num(r, "members"), members, "{r}");
    assert_eq!(num(r, "messages"), messages, "{r}");
    // Each message goes to every member but its sender.
    let expected = messages * (members - 1.0);
    assert_eq!(num(r, "expected"), expected, "{r}");
    assert_eq!(num(r, "delivered"), expected, "{r}");
    assert_eq!(num(r, "lost"), 0.0, "{r}");
    assert_eq!(r["all_losses_seen"], Value::Bool(true), "{r}");
    assert_eq!(num(r, "out_of_order"), 0.0, "{r}");
    assert_eq!(num(r, "foreign_events"), 0.0, "{r}");
    assert_eq!(num(r, "incomplete_messages"), 0.0, "{r}");
    let d = num(r, "datagrams");
    assert!(d >= 1.0 && d <= expected, "{r}");
    assert!(num(r, "seconds") > 0.0, "{r}");
    assert!(num(r, "msgs_per_s") > 0.0, "{r}");
    let (p50, p99, max) = (
        num(r, "latency_p50_us"),
        num(r, "latency_p99_us"),
        num(r, "latency_max_us"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
    assert!(num(r, "latency_last_p99_us") <= max, "{r}");
    assert_eq!(num(r, "senders"), senders, "{r}");
}

#[test]
fn closed_loop_run_delivers_everything_and_reports_the_server() {
    let reports = load(&["-n", "3", "-m", "40", "--no-baseline"]);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r["kind"], "server");
    assert_eq!(r["mode"], "W=32");
    assert_eq!(r["packing"], Value::Bool(true));
    assert_complete(r, 3.0, 40.0, 1.0);
    assert!(num(r, "server_cpu_ns") > 0.0, "{r}");
    assert!(num(r, "server_ns_per_msg") > 0.0, "{r}");
    assert_eq!(num(r, "server_dropped_sends"), 0.0, "{r}");
}

#[test]
fn flood_with_two_senders_and_no_packing() {
    let reports = load(&[
        "-n",
        "4",
        "-s",
        "2",
        "-m",
        "60",
        "--flood",
        "--no-packing",
        "--no-baseline",
    ]);
    let r = &reports[0];
    assert_eq!(r["mode"], "flood");
    assert_eq!(r["packing"], Value::Bool(false));
    assert_complete(r, 4.0, 60.0, 2.0);
    // One event per datagram.
    assert_eq!(num(r, "datagrams"), num(r, "delivered"), "{r}");
}

#[test]
fn the_ceiling_comes_first_and_the_server_is_compared_with_it() {
    let reports = load(&["-n", "3", "-m", "30"]);
    assert_eq!(reports.len(), 2);
    let (b, r) = (&reports[0], &reports[1]);
    assert_eq!(b["kind"], "kernel ceiling");
    assert_eq!(b["packing"], Value::Null);
    assert_complete(b, 3.0, 30.0, 1.0);
    assert_eq!(b["server_cpu_ns"], Value::Null);
    assert_complete(r, 3.0, 30.0, 1.0);
    assert_eq!(
        num(r, "ceiling_datagrams_per_s"),
        num(b, "datagrams_per_s"),
        "{r}"
    );
}

#[test]
fn idle_members_are_joined_and_kept_alive() {
    let reports = load(&["-n", "30", "--idle", "1"]);
    let r = &reports[0];
    assert_eq!(r["kind"], "idle");
    assert!(num(r, "join_seconds") > 0.0, "{r}");
    assert!(num(r, "server_rss_kib") > 0.0, "{r}");
    assert!(num(r, "idle_cpu_percent") >= 0.0, "{r}");
}

#[test]
fn refuses_a_room_of_one() {
    let out = Command::new(LOAD)
        .args(["-n", "1", "--server-bin", SERVER])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2 members"));
}

/// Runs chat-load with `args`, killed after `limit`; returns its exit code,
/// its stderr and how long it took.
fn run_bounded(args: &[&str], limit: Duration) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(LOAD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-load");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chat-load {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, start.elapsed())
}

#[test]
fn a_silent_server_ends_the_run_with_one_line() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    let (code, stderr, took) = run_bounded(
        &["--server", &addr, "-n", "3", "-d", "1", "--idle-wait", "0"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("chat-load: no answer from chat server at {addr}\n")
    );
    assert!(took >= Duration::from_secs(4), "gave up after {took:?}");
}

#[test]
fn a_closed_port_ends_the_run_at_once() {
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("address").to_string()
    }; // closed again
    let (code, stderr, _) = run_bounded(
        &["--server", &addr, "-n", "3", "-d", "1", "--idle-wait", "0"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("chat-load: cannot join chat server at {addr}: Connection refused\n")
    );
}

#[test]
fn errors_carry_no_os_error_number() {
    let (code, stderr, _) = run_bounded(
        &[
            "--server-bin",
            "/nonexistent",
            "-n",
            "3",
            "--no-baseline",
            "--idle-wait",
            "0",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "chat-load: cannot start '/nonexistent': No such file or directory\n"
    );
}

#[test]
fn a_bad_json_path_fails_before_any_run() {
    let path = std::env::temp_dir()
        .join(format!("udpchat-load-missing-{}", std::process::id()))
        .join("perf.json");
    let path = path.to_str().expect("UTF-8 temp path");
    // Without --idle-wait 0 and with the ceiling, a run would take seconds.
    let (code, stderr, took) = run_bounded(
        &["--server-bin", SERVER, "-n", "3", "--json", path],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("chat-load: cannot open '{path}': No such file or directory\n")
    );
    assert!(took < Duration::from_secs(2), "failed only after {took:?}");
}

#[test]
fn text_len_out_of_range_is_a_usage_error() {
    for bad in ["25", "1001"] {
        let (code, stderr, _) = run_bounded(&["--text-len", bad], Duration::from_secs(20));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("26..=1000"), "{stderr}");
    }
}
