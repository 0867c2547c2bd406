//! `chat-load` end to end, against the real `chat-server`: tiny runs whose
//! JSON must show every message delivered and sane figures. Behaviour only:
//! no speed is asserted (that is the benchmark's job, not a test's).

mod common;

use common::{json_reports, num, output_within, LOAD};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `chat-server` binary of the `udpchat` package. Cargo sets
/// `CARGO_BIN_EXE_*` only for a test's own package, so it is found in the
/// shared target directory: this test runs as `target/<profile>/deps/load-…`.
fn server_bin() -> String {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test runs in target/<profile>/deps");
    let bin = dir.join("chat-server");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p udpchat --bin chat-server`, or run `cargo test` at the workspace root)",
        bin.display()
    );
    bin.to_str().expect("a UTF-8 target path").to_string()
}

/// Runs chat-load against the chat-server of this build (bounded), returns its JSON reports.
fn load(args: &[&str]) -> Vec<Value> {
    let server = server_bin();
    let mut all = vec!["--server-bin", &server];
    all.extend_from_slice(args);
    json_reports(&all)
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
    // Every datagram was opened by its member's connection, none lost.
    assert_eq!(num(r, "failed_opens"), 0.0, "{r}");
    assert_eq!(num(r, "sessions_lost"), 0.0, "{r}");
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

/// A packed flood: the server sends each member a turn's several datagrams
/// as one segmented send (UDP GSO), and every member still opens each one.
#[test]
fn a_packed_flood_goes_in_segmented_sends() {
    let reports = load(&[
        "-n",
        "4",
        "-s",
        "2",
        "-m",
        "3000",
        "--flood",
        "--no-baseline",
    ]);
    let r = &reports[0];
    assert_eq!(r["packing"], Value::Bool(true));
    assert_complete(r, 4.0, 3000.0, 2.0);
    assert!(num(r, "server_segmented_sends") > 0.0, "{r}");
    assert_eq!(num(r, "server_dropped_sends"), 0.0, "{r}");
}

#[test]
fn the_ceilings_come_first_and_the_server_is_compared_with_the_sealed_one() {
    let reports = load(&["-n", "3", "-m", "30"]);
    assert_eq!(reports.len(), 3);
    let (b, u, r) = (&reports[0], &reports[1], &reports[2]);
    assert_eq!(b["kind"], "kernel ceiling, sealed");
    assert_eq!(u["kind"], "kernel ceiling, unsealed");
    for c in [b, u] {
        assert_eq!(c["packing"], Value::Null);
        assert_complete(c, 3.0, 30.0, 1.0);
        assert_eq!(c["server_cpu_ns"], Value::Null);
    }
    assert_eq!(r["kind"], "server");
    assert_complete(r, 3.0, 30.0, 1.0);
    assert_eq!(
        num(r, "ceiling_datagrams_per_s"),
        num(b, "datagrams_per_s"),
        "{r}"
    );
}

/// Members that discard a seeded share of what they receive: each discarded
/// event is either repaired (where the server serves NACK) or seen as lost,
/// and nothing fails to open.
#[test]
fn discarded_datagrams_are_repaired_or_seen_as_lost() {
    let reports = load(&[
        "-n",
        "4",
        "-m",
        "300",
        "--no-baseline",
        "--discard",
        "10",
        "--seed",
        "3",
    ]);
    let r = &reports[0];
    assert!(num(r, "discarded") > 0.0, "{r}");
    assert_eq!(r["all_losses_seen"], Value::Bool(true), "{r}");
    assert_eq!(num(r, "failed_opens"), 0.0, "{r}");
    assert_eq!(num(r, "sessions_lost"), 0.0, "{r}");
    let (expected, delivered) = (num(r, "expected"), num(r, "delivered"));
    assert_eq!(expected, 300.0 * 3.0, "{r}");
    assert_eq!(delivered + num(r, "lost"), expected, "{r}");
    if num(r, "nacks") == 0.0 {
        assert!(
            num(r, "lost") > 0.0,
            "no repair, so the discards are loss: {r}"
        );
    }
}

/// The server as shipped (its history in a temporary database, repair on)
/// and the same with `--db none --no-repair`, in one invocation.
#[test]
fn the_server_as_shipped_and_bare() {
    let reports = load(&[
        "-n",
        "3",
        "-m",
        "30",
        "--no-baseline",
        "--against",
        "chat-server,chat-server-bare",
    ]);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["kind"], "server");
    assert_eq!(reports[1]["kind"], "server --db none --no-repair");
    for r in &reports {
        assert_complete(r, 3.0, 30.0, 1.0);
    }
}

#[test]
fn idle_members_are_joined_and_kept_alive() {
    let reports = load(&["-n", "30", "--idle", "1"]);
    let r = &reports[0];
    assert_eq!(r["kind"], "idle");
    assert!(num(r, "join_seconds") > 0.0, "{r}");
    assert!(num(r, "server_rss_kib") > 0.0, "{r}");
    assert!(num(r, "idle_cpu_percent") >= 0.0, "{r}");
    assert_eq!(r["mode"], "idle", "{r}");
    // The same against the server with --db none --no-repair.
    let reports = load(&["-n", "30", "--idle", "1", "--against", "chat-server-bare"]);
    assert_eq!(reports[0]["mode"], "idle, --db none --no-repair");
    assert!(num(&reports[0], "server_rss_kib") > 0.0, "{}", reports[0]);
}

/// Runs chat-load with `args`, killed after `limit`; returns its exit code
/// and its stderr.
fn run_bounded(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let child = Command::new(LOAD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-load");
    let out = output_within(child, limit, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

#[test]
fn a_silent_server_ends_the_run_with_one_line() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    let (code, stderr) = run_bounded(
        &["--server", &addr, "-n", "3", "-d", "1", "--idle-wait", "0"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("chat-load: no answer from chat server at {addr}\n")
    );
}

#[test]
fn a_closed_port_ends_the_run_at_once() {
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("address").to_string()
    }; // closed again
    let (code, stderr) = run_bounded(
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
    let (code, stderr) = run_bounded(
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
    // The server binary does not exist: had the runs come first, the error
    // would be about starting it.
    let (code, stderr) = run_bounded(
        &["--server-bin", "/nonexistent", "-n", "3", "--json", path],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("chat-load: cannot open '{path}': No such file or directory\n")
    );
}

#[test]
fn text_len_out_of_range_is_a_usage_error() {
    for bad in ["25", "1001"] {
        let (code, stderr) = run_bounded(&["--text-len", bad], Duration::from_secs(20));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("26..=1000"), "{stderr}");
    }
}

/// Every out-of-range option is a usage error (exit 2) whose first line names
/// the option and the allowed range; nothing is clamped into range.
#[test]
fn out_of_range_options_are_refused_not_clamped() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--threads", "0"], "--threads", "1..=64"),
        (&["--threads", "65"], "--threads", "1..=64"),
        (&["--ack-window", "0"], "--ack-window", "1..=1024"),
        (&["--ack-window", "1025"], "--ack-window", "1..=1024"),
        (&["--window", "0"], "--window", "1..="),
        (&["--messages", "0"], "--messages", "1..="),
        (&["-n", "1"], "--members", "2..=100000"),
        (&["-s", "0"], "--senders", "1..=99"),
        (&["-s", "100"], "--senders", "1..=99"),
        (&["-n", "3", "-s", "3"], "--senders", "below --members"),
        (&["--rcvbuf", "0"], "--rcvbuf", "1..="),
        (&["--rate", "0"], "--rate", "above 0"),
        (&["--duration", "0"], "--duration", "(0, 3600]"),
        (&["--idle", "3601"], "--idle", "(0, 3600]"),
        (&["--idle-wait=-1"], "--idle-wait", "[0, 3600]"),
        (&["--discard", "51"], "--discard", "[0, 50]"),
        (&["--discard=-1"], "--discard", "[0, 50]"),
        (
            &["--server", "127.0.0.1:9", "--against", "chat-server-bare"],
            "--against",
            "--server",
        ),
        (&["--server", "127.0.0.1"], "--server", "HOST:PORT"),
        (&["--against", "irc"], "--against", "invalid value 'irc'"),
        (
            &["--against", "ngircd", "--baseline"],
            "--against",
            "chat-server",
        ),
        (
            &["--against", "chat-server-bare", "--baseline"],
            "--against",
            "chat-server",
        ),
        (
            &["--against", "ngircd", "--idle", "1"],
            "--against",
            "chat-server or chat-server-bare",
        ),
    ];
    for (args, option, range) in cases {
        let (code, stderr) = run_bounded(args, Duration::from_secs(20));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: ") && first.contains(option) && first.contains(range),
            "{args:?}: {stderr}"
        );
    }
}

/// A chat-server on [::1], started for a test with its key in a temporary
/// directory (held until the server is reaped); killed and reaped on drop.
struct V6Server(Child, String, #[allow(dead_code)] tempfile::TempDir);

impl V6Server {
    fn start() -> V6Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(server_bin())
            .args(["--bind", "[::1]:0", "--rate", "0", "--db", "none", "--key"])
            .arg(dir.path().join("server.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat-server");
        let mut first = String::new();
        let stderr = child.stderr.take().expect("stderr");
        BufReader::new(stderr)
            .read_line(&mut first)
            .expect("read chat-server's first line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("chat-server said {first:?} (does this machine have ::1?)"))
            .to_string();
        V6Server(child, addr, dir)
    }
}

impl Drop for V6Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server given by host name is found; a server on IPv6 loopback is loaded
/// from members on ::1.
#[test]
fn a_server_on_ipv6_loopback_and_a_host_name() {
    let server = V6Server::start();
    let reports = load(&["--server", &server.1, "-n", "3", "-m", "20"]);
    assert_eq!(reports.len(), 1);
    assert_complete(&reports[0], 3.0, 20.0, 1.0);
    // `localhost` resolves to 127.0.0.1 and/or ::1: whichever the server is
    // on is found (here it is on ::1 only).
    let port = server.1.rsplit_once(':').expect("ADDR:PORT").1;
    let resolves_to_v6 = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 1))
        .expect("resolve localhost")
        .any(|a| a.is_ipv6());
    let by_name = format!("localhost:{port}");
    if resolves_to_v6 {
        let reports = load(&["--server", &by_name, "-n", "3", "-m", "20"]);
        assert_complete(&reports[0], 3.0, 20.0, 1.0);
    } else {
        // Only 127.0.0.1 here, where nothing listens: the name is accepted
        // and resolved, and the answer is the refusal, not a usage error.
        let (code, stderr) = run_bounded(
            &["--server", &by_name, "-n", "3", "--idle-wait", "0"],
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with("chat-load: cannot join chat server at 127.0.0.1:"),
            "{stderr}"
        );
    }
}
