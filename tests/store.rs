//! The SQLite history store against real files and real processes: bad stores
//! at open (corrupt, newer schema, another program's, unreadable, in use), a
//! writer killed with SIGKILL, and `sqlite3` reading while the store is open;
//! and the history through chat-server (tests/common/server.rs): what a
//! newcomer sees, HISTORY pages, a restart (the members resume), SIGKILL,
//! and every bad store stopping the server.
//!
//! A libtest-mimic harness, so a test that cannot run here (no `sqlite3`) is
//! reported as ignored with its reason. Every other process is this same test
//! binary started again as a helper (`STORE_HELPER=mode`), never a fork. Run
//! the measurements with `cargo test --release --test store -- --bench`.

use libtest_mimic::{Arguments, Completion, Failed, Measurement, Trial};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use udpchat::store::{HistoryStore, Kind, Message, MessageId, Present, SqliteStore};

/// Long enough for a loaded 2-core machine; only failures wait this long.
const WAIT: Duration = Duration::from_secs(20);
/// The bound for a SIGKILL (1 s), with the 5x margin the tests allow.
const KILL_BOUND: Duration = Duration::from_secs(5);

#[path = "common/server.rs"]
mod server_harness;

use server_harness::*;
use std::net::SocketAddr;

/// A test through chat-server (it fails by panicking).
fn server_trial(name: &str, test: fn()) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var("STORE_HELPER") {
        return helper(
            &mode,
            Path::new(&std::env::var_os("STORE_DB").unwrap_or_default()),
        );
    }
    let tests = vec![
        Trial::test("a_corrupt_file_is_refused_and_kept", corrupt_file),
        Trial::test("a_newer_schema_is_refused_and_kept", newer_schema),
        Trial::test("another_programs_database_is_refused", foreign_database),
        Trial::test("an_unreadable_database_is_refused", unreadable),
        Trial::test("a_database_in_use_is_refused_with_the_pid", in_use),
        Trial::ignorable_test("a_lock_held_by_another_program_is_refused", foreign_lock),
        Trial::test("sigkill_keeps_what_was_handed_over_earlier", sigkill),
        Trial::ignorable_test("sqlite3_reads_the_database_while_open", sqlite3_reads),
        server_trial(
            "chat_server_a_newcomer_sees_the_history_and_pages_back",
            a_newcomer_sees_the_history_and_pages_back,
        ),
        server_trial(
            "chat_server_a_restart_keeps_the_history_and_the_members_resume",
            a_restart_keeps_the_history_and_the_members_resume,
        ),
        server_trial(
            "chat_server_after_sigkill_what_was_accepted_is_in_the_history",
            after_sigkill_what_was_accepted_is_in_the_history,
        ),
        server_trial(
            "chat_server_a_bad_store_stops_the_server_naming_the_file",
            a_bad_store_stops_the_server_naming_the_file,
        ),
        server_trial(
            "chat_server_without_db_uses_the_default_location",
            without_db_the_default_location_is_used,
        ),
        Trial::bench("bench_write_rows", bench_write),
        Trial::bench("bench_page_read_20_rows", bench_page),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

/// A message of client 9 with sequence and room sequence `i`.
fn msg(i: u64) -> Message {
    Message {
        room_seq: i,
        time_ms: 1_700_000_000_000 + i as i64,
        sender: "ann".into(),
        kind: Kind::Member,
        id: MessageId { client: 9, seq: i },
        text: format!("line {i} of a conversation that goes on"),
    }
}

/// What a helper process does, by `mode`, with the database at `db`.
fn helper(mode: &str, db: &Path) -> ExitCode {
    let mut store = match SqliteStore::open(db, 100_000) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store-helper: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match mode {
        // Hold the store open with 5 messages until stdin closes.
        "hold" => {
            store.append((1..=5).map(msg).collect());
            store.name_present(Present {
                name: "Ann".into(),
                name_key: "ann".into(),
                client: 9,
            });
            let _ = store.flush();
            let _ = writeln!(out, "ready");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        // Hand over one message every 10 ms, saying its number once handed.
        "write" => {
            for i in 1..=6000 {
                store.append(vec![msg(i)]);
                let _ = writeln!(out, "{i}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Only open it (the refusals).
        "open" => {}
        _ => return ExitCode::FAILURE,
    }
    ExitCode::SUCCESS
}

/// A helper process, killed and reaped when dropped.
struct Helper {
    child: Child,
    lines: Receiver<(String, Instant)>,
}

impl Helper {
    fn start(mode: &str, db: &Path) -> Helper {
        Helper::spawn(helper_cmd(mode, db))
    }

    fn spawn(mut cmd: Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stdout.take().unwrap());
        Helper { child, lines }
    }

    /// The next line, with when it arrived.
    fn line(&self) -> (String, Instant) {
        self.lines
            .recv_timeout(WAIT)
            .expect("the helper said nothing in time")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sigkill(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn helper_cmd(mode: &str, db: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("STORE_HELPER", mode).env("STORE_DB", db);
    cmd
}

/// Each line of `out` with the time it arrived, from a thread of its own.
fn read_lines(out: ChildStdout) -> Receiver<(String, Instant)> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    rx
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Opens `db` in this process, expecting a refusal; returns the message.
fn refusal(db: &Path) -> String {
    match SqliteStore::open(db, 100) {
        Ok(_) => panic!("'{}' was opened", db.display()),
        Err(e) => e.to_string(),
    }
}

fn corrupt_file() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    assert_eq!(
        refusal(&db),
        format!("cannot open '{}': file is not a database", db.display())
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    Ok(())
}

fn newer_schema() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    drop(SqliteStore::open(&db, 100).unwrap());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 2")
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': schema version 2 is newer than this chat-server's 1",
            db.display()
        )
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    Ok(())
}

fn foreign_database() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("other.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE accounts (id INTEGER)")
        .unwrap();
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': not a udpchat history database",
            db.display()
        )
    );
    Ok(())
}

fn unreadable() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    drop(SqliteStore::open(&db, 100).unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    let expected = format!("cannot open '{}': Permission denied", db.display());
    if !nix::unistd::geteuid().is_root() {
        assert_eq!(refusal(&db), expected);
        return Ok(());
    }
    // Root reads any file: open it as `nobody` in a helper process instead.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = helper_cmd("open", &db);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe system calls; this
    // runs in Command's child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let nobody = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[nobody])?;
            nix::unistd::setgid(nobody)?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("store-helper: {expected}\n")
    );
    Ok(())
}

fn in_use() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let mut holder = Helper::start("hold", &db);
    assert_eq!(holder.line().0, "ready");
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': in use by chat-server pid {}",
            db.display(),
            holder.pid()
        )
    );
    // The lock of a dead process is taken over, and nothing was lost.
    holder.sigkill();
    let store = SqliteStore::open(&db, 100).unwrap();
    assert_eq!(store.last_seq(), 5);
    assert_eq!(store.present_at_start().len(), 1);
    let pid = std::fs::read_to_string(format!("{}.lock", db.display())).unwrap();
    assert_eq!(pid, format!("{}\n", std::process::id()));
    Ok(())
}

fn foreign_lock() -> Result<Completion, Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let lock = format!("{}.lock", db.display());
    let mut cmd = Command::new("flock");
    cmd.args([
        "--exclusive",
        "--no-fork",
        &lock,
        "-c",
        "echo ready; exec cat",
    ]);
    let holder = match Command::new("flock").arg("--version").output() {
        Ok(_) => Helper::spawn(cmd),
        Err(_) => return Ok(Completion::ignored_with("flock(1) is not installed")),
    };
    assert_eq!(holder.line().0, "ready");
    assert_eq!(
        refusal(&db),
        format!("cannot open '{}': in use by another process", db.display())
    );
    Ok(Completion::Completed)
}

fn sigkill() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let mut writer = Helper::start("write", &db);
    let mut handed = Vec::new();
    let start = Instant::now();
    while start.elapsed() < KILL_BOUND + Duration::from_secs(2) {
        handed.push(writer.line());
    }
    let killed = Instant::now();
    writer.sigkill();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<u64> = conn
        .prepare("SELECT room_seq FROM messages ORDER BY room_seq")
        .unwrap()
        .query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let old: Vec<u64> = handed
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > KILL_BOUND)
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    assert!(
        old.len() > 10,
        "too few messages handed over: {}",
        old.len()
    );
    assert_eq!(
        stored[..old.len()],
        old[..],
        "a message handed over earlier is missing"
    );
    let newest = *stored.last().unwrap();
    if let Some((_, at)) = handed.get(newest as usize - 1) {
        println!(
            "  newest stored message was handed over {} ms before the kill ({} of {} stored)",
            killed.duration_since(*at).as_millis(),
            stored.len(),
            handed.len()
        );
    }
    Ok(())
}

fn sqlite3_reads() -> Result<Completion, Failed> {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        return Ok(Completion::ignored_with("sqlite3 is not installed"));
    }
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let holder = Helper::start("hold", &db);
    assert_eq!(holder.line().0, "ready");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*), max(room_seq), min(kind) FROM messages; SELECT name FROM present;")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5|5|member\nAnn\n");
    Ok(Completion::Completed)
}

/// Opens a database in a new directory; the directory goes with the store.
fn bench_store(size: usize) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempdir();
    let store = SqliteStore::open(&dir.path().join("history.db"), size).unwrap();
    (dir, store)
}

fn bench_write(test_mode: bool) -> Result<Option<Measurement>, Failed> {
    // A round fits in the writer's queue and in its 1 s lag limit.
    let (rounds, rows) = if test_mode { (1, 1_000) } else { (10, 10_000) };
    let (_dir, mut store) = bench_store(10_000);
    let mut per_row = Vec::new();
    let mut handing = Duration::ZERO;
    let cpu_before = cpu_time(UsageWho::RUSAGE_SELF);
    let mut next = 1;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..rows / 100 {
            let batch = (next..next + 100).map(msg).collect();
            let handed = Instant::now();
            store.append(batch);
            handing += handed.elapsed();
            next += 100;
        }
        store.flush().unwrap();
        per_row.push(start.elapsed().as_nanos() as u64 / rows);
    }
    assert_eq!(store.not_stored(), 0);
    assert_eq!(store.last(1).unwrap()[0].room_seq, next - 1);
    let cpu = cpu_time(UsageWho::RUSAGE_SELF) - cpu_before;
    let m = measurement(&per_row);
    if !test_mode {
        println!(
            "  {} rows/s written (batches of 100, 10,000 kept), {:.0} rows per CPU second; \
             append costs the caller {} ns a row",
            1_000_000_000 / m.avg.max(1),
            (rounds * rows) as f64 / cpu.as_secs_f64(),
            handing.as_nanos() / u128::from(rounds * rows)
        );
    }
    Ok(Some(m))
}

fn bench_page(test_mode: bool) -> Result<Option<Measurement>, Failed> {
    let (_dir, mut store) = bench_store(10_000);
    for i in 0..100 {
        store.append((i * 100 + 1..=i * 100 + 100).map(msg).collect());
    }
    store.flush().unwrap();
    let reads = if test_mode { 10 } else { 2_000 };
    let mut times = Vec::new();
    for (label, seq) in [
        ("recent, from memory", u64::MAX),
        ("old, from the database", 5_000),
    ] {
        let start = Instant::now();
        let cpu_before = cpu_time(UsageWho::RUSAGE_THREAD);
        for _ in 0..reads {
            let page = store.before(seq, 20).unwrap();
            assert_eq!(page.len(), 20);
        }
        let cpu = (cpu_time(UsageWho::RUSAGE_THREAD) - cpu_before) / reads as u32;
        let each = start.elapsed().as_nanos() as u64 / reads;
        if !test_mode {
            println!(
                "  20-row page, {label}: {:.1} µs ({:.1} µs of CPU)",
                each as f64 / 1000.0,
                cpu.as_secs_f64() * 1e6
            );
        }
        times.push(each);
    }
    Ok(Some(measurement(&times[1..])))
}

/// The user and system CPU time of `who` so far.
fn cpu_time(who: UsageWho) -> Duration {
    let u = getrusage(who).unwrap();
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    d(u.user_time()) + d(u.system_time())
}

/// The mean of `samples` (ns) and their standard deviation (shown as +/-).
fn measurement(samples: &[u64]) -> Measurement {
    let n = samples.len() as f64;
    let avg = samples.iter().sum::<u64>() as f64 / n;
    let var = samples
        .iter()
        .map(|&s| (s as f64 - avg).powi(2))
        .sum::<f64>()
        / n;
    Measurement {
        avg: avg as u64,
        variance: var.sqrt() as u64,
    }
}

// ---- the history through chat-server ----

/// Starts a server again in `dir` (its key and `history.db`) on `addr`.
fn restart(dir: &std::path::Path, addr: SocketAddr, args: &[&str]) -> Server {
    let mut all = vec!["--bind", &*Box::leak(addr.to_string().into_boxed_str())];
    all.extend_from_slice(args);
    Server::spawn(
        Server::command_with_key(&dir.join("server.key"), &all),
        Stdio::piped(),
    )
}

fn a_newcomer_sees_the_history_and_pages_back() {
    let mut s = Server::start(&["--history-on-join", "3", "--rate", "0"]);
    let mut alice = Client::join(s.addr, "alice");
    for k in 0..5 {
        alice.say_acked(&format!("line {k}"));
    }
    assert_eq!(s.command("notice"), "sent to 1 member");
    let mut bob = Client::join(s.addr, "bob");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "line 3".into()));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "line 4".into()));
    assert_eq!(bob.event(), Ev::Admin("notice".into()));
    let seqs: Vec<(u8, u64)> = bob.lines.iter().map(|l| (l.flags, l.room_seq)).collect();
    assert_eq!(seqs, [(1, 4), (1, 5), (1, 6)], "flagged history");
    // HISTORY pages back from the newest.
    let line = |k: u64| ("alice".to_string(), format!("line {}", k - 1), k);
    assert_eq!(
        bob.history(0, 2),
        Got::History(0, true, vec![line(5), (String::new(), "notice".into(), 6)])
    );
    assert_eq!(
        bob.history(5, 50),
        Got::History(5, false, (1..5).map(line).collect())
    );
}

fn a_restart_keeps_the_history_and_the_members_resume() {
    let mut s = Server::start(&["--rate", "0"]);
    let (dir, addr) = (s.take_dir(), s.addr);
    let [mut alice, mut bob] = in_the_room(addr, ["alice", "bob"]);
    alice.say_acked("before the restart");
    assert_eq!(
        bob.event(),
        Ev::Said("alice".into(), "before the restart".into())
    );
    let epoch = alice.epoch;
    s.signal(Signal::SIGTERM);
    assert_eq!(alice.next(), Got::Reconnecting);
    assert_eq!(bob.next(), Got::Reconnecting);
    assert_eq!(s.wait_exit(WAIT).and_then(|st| st.code()), Some(0));
    drop(s);
    let mut s = restart(dir.path(), addr, &["--rate", "0"]);
    // Until alice comes back (her connection is not run yet), her name is
    // held for her ticket.
    let mut mallory = Client::new(addr, "ALICE");
    assert_eq!(mallory.try_join(), Err(Got::Refused(1, 0, "alice".into())));
    for m in [&mut alice, &mut bob] {
        match m.expect(|g| matches!(g, Got::Welcome { .. })) {
            Got::Welcome {
                flags,
                epoch: e,
                room_seq,
                name,
                ..
            } => {
                assert_eq!(flags & 2, 2, "resumed");
                assert_eq!((e, room_seq, name.as_str()), (epoch, 1, m.name.as_str()));
            }
            _ => unreachable!(),
        }
    }
    // Alice had not shown her own line: it comes as catch-up. Nobody left
    // or joined.
    assert_eq!(
        alice.event(),
        Ev::Said("alice".into(), "before the restart".into())
    );
    assert_eq!(alice.lines.last().map(|l| l.flags), Some(2));
    bob.silence();
    alice.say_acked("after the restart");
    assert_eq!(
        bob.event(),
        Ev::Said("alice".into(), "after the restart".into())
    );
    assert_eq!(bob.lines.last().map(|l| l.room_seq), Some(2));
    s.wait_log("alice resumed from");
    let mut carol = Client::new(addr, "carol");
    carol.try_join().expect("carol");
    let Got::History(_, false, lines) = carol.history(0, 10) else {
        panic!("a page")
    };
    let texts: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(texts, ["before the restart", "after the restart"]);
}

fn after_sigkill_what_was_accepted_is_in_the_history() {
    let mut s = Server::start(&["--rate", "0"]);
    let (dir, addr) = (s.take_dir(), s.addr);
    let mut alice = Client::join(addr, "alice");
    for k in 0..5 {
        alice.say_acked(&format!("kept {k}"));
    }
    // Written within 1 s (PROTOCOL.md); the test allows 5.
    let db = dir.path().join("history.db");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("read the database");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap_or(0);
        if n == 5 {
            break;
        }
        assert!(Instant::now() < end, "{n} of 5 lines written after 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.signal(Signal::SIGKILL);
    s.wait_exit(WAIT).expect("killed");
    drop(s);
    let _s = restart(dir.path(), addr, &[]);
    let mut bob = Client::join(addr, "bob");
    let Got::History(_, false, lines) = bob.history(0, 10) else {
        panic!("a page")
    };
    let texts: Vec<String> = lines.into_iter().map(|l| l.1).collect();
    assert_eq!(
        texts,
        (0..5).map(|k| format!("kept {k}")).collect::<Vec<_>>()
    );
}

fn a_bad_store_stops_the_server_naming_the_file() {
    let dir = temp_dir();
    let key = dir.path().join("server.key");
    let start = |db: &std::path::Path| {
        Server::command_with_key(
            &key,
            &["--bind", "127.0.0.1:0", "--db", db.to_str().unwrap()],
        )
        .stdin(Stdio::null())
        .output()
        .expect("run chat-server")
    };
    let refused = |db: &std::path::Path, why: &str| {
        let out = start(db);
        assert_eq!(out.status.code(), Some(1), "{}", db.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("chat-server: cannot open '{}': {why}\n", db.display())
        );
    };
    let corrupt = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&corrupt, &garbage).expect("write");
    refused(&corrupt, "file is not a database");
    assert_eq!(std::fs::read(&corrupt).expect("read"), garbage, "kept");
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .expect("create")
        .execute_batch("CREATE TABLE accounts (id INTEGER)")
        .expect("a table");
    refused(&foreign, "not a udpchat history database");
    // A newer schema, made from a database of this version.
    let newer = dir.path().join("newer.db");
    drop(udpchat::store::SqliteStore::open(&newer, 10).expect("a new store"));
    rusqlite::Connection::open(&newer)
        .expect("open")
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 2")
        .expect("a newer version");
    refused(
        &newer,
        "schema version 2 is newer than this chat-server's 1",
    );
    // In use by a running server.
    let s = Server::start(&[]);
    let db = s.dir().expect("a directory").join("history.db");
    refused(&db, &format!("in use by chat-server pid {}", s.pid()));
}

fn without_db_the_default_location_is_used() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    for (xdg, db) in [
        (true, dir.path().join("state/udpchat/history.db")),
        (
            false,
            dir.path().join("home/.local/state/udpchat/history.db"),
        ),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["--bind", "127.0.0.1:0", "--key"])
            .arg(dir.path().join("server.key"))
            .env("HOME", dir.path().join("home"));
        if xdg {
            cmd.env("XDG_STATE_HOME", dir.path().join("state"));
        } else {
            cmd.env_remove("XDG_STATE_HOME");
        }
        let mut s = Server::spawn(cmd, Stdio::piped());
        let mut alice = Client::join(s.addr, "alice");
        alice.say_acked("kept by default");
        let mode = std::fs::metadata(&db).expect("the default database").mode();
        assert_eq!(mode & 0o777, 0o600, "{}", db.display());
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(WAIT).and_then(|st| st.code()), Some(0));
    }
}
