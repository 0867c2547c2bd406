//! Nothing lost (issue 10), through the real binaries: five members behind
//! lossy relays (tests/common/relay.rs) each see every line once, in time and
//! in each sender's order;
//! a server killed with SIGKILL and started again on the same port, key and
//! database gets its clients back by themselves with its history; a client
//! stopped longer than the member timeout catches up once, in order.

#[path = "common/client.rs"]
mod client_harness;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/room.rs"]
mod room;
#[path = "common/server.rs"]
mod server_harness;

use client_harness::Client;
use nix::sys::signal::Signal;
use relay::{Dir, Faults, Relay};
use room::{
    lines, member_line, nothing_twice, pairs, said, spawn_client, start_server, talk, Room, WAIT,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Each line must be shown within this long after it was said (issue 10's "Proof").
const SHOWN_WITHIN: Duration = Duration::from_secs(5);
/// A line said this long before the server is killed must be in its history
/// (the requirement is 1 s; the test allows 5x).
const STORED_WITHIN: Duration = Duration::from_secs(5);

/// Reads whatever `c` printed since the last call; each new line with when it was read
/// (no earlier than it was printed).
fn fresh_lines(c: &mut Client) -> Vec<(String, Instant)> {
    let before = c.out.seen.len();
    c.out.wait_for("\u{0}", Duration::ZERO); // drains what has arrived
    let now = Instant::now();
    c.out.seen[before..]
        .iter()
        .map(|l| (l.clone(), now))
        .collect()
}

const MEMBERS: usize = 5;
const LINES: usize = 200;

/// What the members of [`chaos`] showed: for each receiver and each other
/// member, the numbers of that member's lines in the order shown, each with
/// how long after it was said it was read.
struct Shown {
    names: Vec<String>,
    /// `from[r][s]`: `(k, delay)` of the lines of member `s` that `r` showed.
    from: Vec<Vec<Vec<(usize, Duration)>>>,
}

/// Issue 10's chaos run: every member behind a relay that drops 10%,
/// duplicates 2% and reorders 5% of the datagrams both ways (seeded), the
/// server with `--rate 0`; each of the 5 members says 200 lines (a round of
/// one line each every 20 ms). Checks that every member showed every other
/// member's lines exactly once, each within 5 s of being said, and never
/// "messages lost" nor "not delivered"; returns what was shown for the order
/// check.
fn chaos() -> Shown {
    let room = Room::open(&["--db", "none"]);
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let relays: Vec<Relay> = (0..MEMBERS as u64)
        .map(|i| {
            let r = Relay::start(room.server.addr, 0xC4A0_5000 + i);
            r.set_both(Faults {
                drop: 0.10,
                duplicate: 0.02,
                reorder: 0.05,
                ..Faults::NONE
            });
            r
        })
        .collect();
    let mut members: Vec<Client> = relays
        .iter()
        .zip(&names)
        .map(|(r, n)| room.join(&r.addr_text(), n))
        .collect();

    let mut said_at: HashMap<(usize, usize), Instant> = HashMap::new();
    let mut read: Vec<Vec<(String, Instant)>> = vec![Vec::new(); MEMBERS];
    let text = |i: usize, k: usize| format!("line {k} of m{i}");
    for k in 0..LINES {
        for (i, m) in members.iter_mut().enumerate() {
            m.send(&text(i, k));
            said_at.insert((i, k), Instant::now());
        }
        for (i, m) in members.iter_mut().enumerate() {
            read[i].extend(fresh_lines(m));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected = (MEMBERS - 1) * LINES;
    let end = Instant::now() + SHOWN_WITHIN + WAIT;
    let count =
        |v: &Vec<(String, Instant)>| v.iter().filter(|(l, _)| member_line(l).is_some()).count();
    while read.iter().any(|v| count(v) < expected) && Instant::now() < end {
        for (i, m) in members.iter_mut().enumerate() {
            read[i].extend(fresh_lines(m));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut from = vec![vec![Vec::new(); MEMBERS]; MEMBERS];
    for (r, got) in read.iter().enumerate() {
        // Neither "(N messages lost)" nor "not delivered".
        let bad = |l: &str| l.contains("lost") || l.contains("delivered");
        if let Some(at) = got.iter().position(|(l, _)| bad(l)) {
            let context: Vec<&str> = got[at.saturating_sub(8)..(at + 8).min(got.len())]
                .iter()
                .map(|(l, _)| l.as_str())
                .collect();
            panic!("{}: {:?} among {context:#?}", names[r], got[at].0);
        }
        for (line, at) in got {
            let Some((name, said)) = member_line(line) else {
                continue;
            };
            let s = names
                .iter()
                .position(|n| *n == name)
                .expect("a member's name");
            let k = (0..LINES)
                .find(|&k| said == text(s, k))
                .unwrap_or_else(|| panic!("{}: never said: {line:?}", names[r]));
            from[r][s].push((k, at.saturating_duration_since(said_at[&(s, k)])));
        }
    }
    for (r, by_sender) in from.iter().enumerate() {
        for (s, got) in by_sender.iter().enumerate() {
            let mut ks: Vec<usize> = got.iter().map(|&(k, _)| k).collect();
            ks.sort_unstable();
            let want: Vec<usize> = if s == r {
                Vec::new()
            } else {
                (0..LINES).collect()
            };
            assert!(
                ks == want,
                "{} showed these of m{s}'s lines: {ks:?}",
                names[r]
            );
            for &(k, late) in got {
                assert!(
                    late <= SHOWN_WITHIN,
                    "{}: line {k} of m{s} shown {late:?} after it was said",
                    names[r]
                );
            }
        }
    }
    let dropped: u64 = relays
        .iter()
        .flat_map(|r| [r.counts(Dir::ToServer), r.counts(Dir::ToClient)])
        .map(|c| c.dropped)
        .sum();
    assert!(dropped > 100, "the relays dropped only {dropped}");
    Shown { names, from }
}

#[test]
fn five_members_behind_lossy_relays_see_every_line_once_in_order_and_in_time() {
    let shown = chaos();
    for (r, by_sender) in shown.from.iter().enumerate() {
        for (s, got) in by_sender.iter().enumerate() {
            let ks: Vec<usize> = got.iter().map(|&(k, _)| k).collect();
            assert!(
                ks.windows(2).all(|w| w[0] < w[1]),
                "{} showed m{s}'s lines in this order: {ks:?}",
                shown.names[r]
            );
        }
    }
}

/// `(sender, text)` of every member line in the history database.
fn history(db: &std::path::Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the history");
    let mut q = conn
        .prepare("SELECT sender, text FROM messages WHERE kind = 'member' ORDER BY room_seq")
        .expect("the messages table");
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("a row"))
        .collect()
}

#[test]
fn after_sigkill_and_a_restart_the_clients_come_back_with_the_history() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The history in dir/history.db (start_server's default). A 3 s member
    // timeout: the clients notice the silence of a dead server after 3 s
    // (the default is 30 s).
    let db = dir.path().join("history.db");
    let opts = ["--member-timeout", "3"];
    let mut first = start_server(dir.path(), "127.0.0.1:0", "server.key", &opts);
    let addr = first.addr.to_string();
    let known = dir.path().join("known_servers");
    let names = ["alice", "bob", "carol"];
    let mut members: Vec<Client> = names
        .iter()
        .map(|n| {
            let mut c = spawn_client(&known, &addr, n);
            c.out
                .wait_for(&format!("welcome, {n}"), WAIT)
                .expect("welcome");
            c
        })
        .collect();

    // Talk for 7 s, then kill the server in the middle of it.
    let mut said_at = Vec::new();
    for k in 0..28 {
        let i = k % names.len();
        let line = format!("before {k}");
        members[i].send(&line);
        said_at.push((names[i].to_string(), line, Instant::now()));
        std::thread::sleep(Duration::from_millis(250));
    }
    first.signal(Signal::SIGKILL);
    let crash = Instant::now();
    assert!(
        first.wait_exit(WAIT).is_some(),
        "the server survived SIGKILL"
    );
    drop(first);
    let during = "said while the server was down".to_string();
    members[0].send(&during);
    for m in &mut members {
        m.out
            .wait_for("reconnecting", WAIT)
            .expect("-- reconnecting");
    }

    let _second = start_server(dir.path(), &addr, "server.key", &opts);
    // Each comes back by itself: the line said during the outage reaches the others.
    for m in &mut members[1..] {
        m.out
            .wait_for(&format!("alice: {during}"), 3 * WAIT)
            .expect("the line kept while reconnecting");
    }
    let after = lines("after the restart", 2);
    let (a, rest) = members.split_at_mut(1);
    talk(&mut rest[0], "bob", &mut a[0], &after);
    for m in &mut members {
        assert!(
            m.child.try_wait().expect("wait").is_none(),
            "a client ended"
        );
        nothing_twice(m);
    }
    let old: Vec<(String, String)> = said_at
        .iter()
        .filter(|(_, _, at)| crash.saturating_duration_since(*at) > STORED_WITHIN)
        .map(|(n, l, _)| (n.clone(), l.clone()))
        .collect();
    assert!(
        old.len() >= 5,
        "{} lines said long before the crash",
        old.len()
    );
    let kept = history(&db);
    for l in &old {
        assert!(kept.contains(l), "{l:?} is not in the history: {kept:?}");
    }
    // The line kept while reconnecting is stored too (its batch is committed
    // within 0.5 s of being said).
    let end = Instant::now() + WAIT;
    while !history(&db).contains(&("alice".to_string(), during.clone())) {
        assert!(Instant::now() < end, "{during:?} never stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, m) in members.iter().enumerate() {
        let others: Vec<(String, String)> =
            old.iter().filter(|(n, _)| n != names[i]).cloned().collect();
        let shown = said(m);
        for l in &others {
            assert!(shown.contains(l), "{}: never showed {l:?}", names[i]);
        }
    }
}

#[test]
fn a_client_stopped_longer_than_the_member_timeout_catches_up_once_in_order() {
    let room = Room::open(&["--member-timeout", "1", "--db", "none"]);
    let mut alice = room.join(&room.addr(), "alice");
    let mut bob = room.join(&room.addr(), "bob");
    let mut carol = room.join(&room.addr(), "carol");

    let before = lines("before carol stopped", 1);
    talk(&mut alice, "alice", &mut carol, &before);
    carol.signal_group(Signal::SIGSTOP);
    // Once the server has timed carol out, nothing said reaches her socket.
    bob.out
        .wait_for("carol left", WAIT)
        .expect("carol timed out");
    let away = lines("while carol was away", 10);
    talk(&mut alice, "alice", &mut bob, &away);
    carol.signal_group(Signal::SIGCONT);

    let note = carol
        .out
        .wait_for("while you were away", 3 * WAIT)
        .unwrap_or_else(|| panic!("no catch-up notice: {:#?}", carol.out.seen));
    for l in &away {
        carol
            .out
            .wait_for(&format!("alice: {l}"), WAIT)
            .unwrap_or_else(|| panic!("carol never caught up {l:?} (or out of order)"));
    }
    let back = lines("carol is back", 2);
    talk(&mut bob, "bob", &mut carol, &back);
    assert!(
        carol.child.try_wait().expect("wait").is_none(),
        "carol ended"
    );
    let notes = carol
        .out
        .seen
        .iter()
        .filter(|l| l.contains("while you were away"))
        .count();
    assert_eq!(notes, 1, "{note:?}: {:?}", carol.out.seen);
    assert!(note.contains(" 10 messages "), "{note:?}");
    nothing_twice(&carol);
    let from_others: Vec<(String, String)> = said(&carol);
    assert_eq!(
        from_others,
        [
            pairs("alice", &before),
            pairs("alice", &away),
            pairs("bob", &back)
        ]
        .concat(),
        "carol's lines"
    );
}

#[test]
fn a_reconnect_to_a_server_back_with_another_key_ends_the_client() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let known = dir.path().join("known_servers");
    let opts = ["--db", "none", "--member-timeout", "3"];
    let mut first = start_server(dir.path(), "127.0.0.1:0", "first.key", &opts);
    let addr = first.addr.to_string();
    let mut alice = spawn_client(&known, &addr, "alice");
    alice.out.wait_for("welcome, alice", WAIT).expect("welcome");
    first.signal(Signal::SIGKILL);
    assert!(
        first.wait_exit(WAIT).is_some(),
        "the server survived SIGKILL"
    );
    drop(first);
    alice
        .out
        .wait_for("reconnecting", WAIT)
        .expect("-- reconnecting");
    let _second = start_server(dir.path(), &addr, "second.key", &opts);
    let status = alice.wait_clean(3 * WAIT);
    assert_eq!(status.code(), Some(1), "{:?}", alice.out.seen);
    let err = alice.err.rest(WAIT).join("\n");
    for key in ["first.key", "second.key"] {
        let f = room::fingerprint(&dir.path().join(key));
        assert!(err.contains(&f), "{key}'s fingerprint {f}: {err}");
    }
}
